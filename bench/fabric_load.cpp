// Load generator for the fabric benchmark: streaming chat completions against one HTTP target.
//   fabric_load open  HOST:PORT RATE SECONDS MAX_TOKENS   open loop at RATE requests/s
//   fabric_load closed HOST:PORT CONC SECONDS MAX_TOKENS  CONC clients back to back
//   fabric_load hold  HOST:PORT STREAMS SECONDS MAX_TOKENS STREAMS opened at once, held
// Prints one JSON line: sent, ok, failed, time to first byte p50/p99 (ms, first body byte of
// the streamed answer), completions/s, and for hold the most streams open at once. FABRIC_KEY in
// the environment: sent as Authorization: Bearer (a gateway with tenants).
#include <utility>
#include <algorithm>
#include <utility>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Stats {
  std::uint64_t sent = 0, ok = 0, failed = 0;
  std::vector<double> ttfb_ms;
  int open = 0, max_open = 0;
};

struct Call : std::enable_shared_from_this<Call> {
  Call(net::io_context& ioc, tcp::endpoint ep, const std::string& body, Stats& st, std::function<void()> done)
      : stream(ioc), ep(ep), st(st), done(std::move(done)) {
    req = {http::verb::post, "/v1/chat/completions", 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::content_type, "application/json");
    if (const char* key = std::getenv("FABRIC_KEY"); key && *key) req.set(http::field::authorization, std::string("Bearer ") + key);
    req.keep_alive(false);
    req.body() = body;
    req.prepare_payload();
  }
  void go() {
    t0 = Clock::now();
    ++st.sent;
    auto self = shared_from_this();
    stream.expires_after(std::chrono::seconds(120));
    stream.async_connect(ep, [self](beast::error_code ec) {
      if (ec) return self->finish(false);
      http::async_write(self->stream, self->req, [self](beast::error_code ec, std::size_t) {
        if (ec) return self->finish(false);
        self->parser.body_limit(1 << 30);
        http::async_read_header(self->stream, self->buf, self->parser, [self](beast::error_code ec, std::size_t) {
          if (ec || self->parser.get().result_int() != 200) return self->finish(false);
          ++self->st.open;
          self->st.max_open = std::max(self->st.max_open, self->st.open);
          self->opened = true;
          self->read();
        });
      });
    });
  }
  void read() {
    auto self = shared_from_this();
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    http::async_read(stream, buf, parser, [self](beast::error_code ec, std::size_t) {
      const std::size_t n = sizeof self->chunk - self->parser.get().body().size;
      if (n > 0 && !self->got_first) {
        self->got_first = true;
        self->st.ttfb_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - self->t0).count());
      }
      if (ec == http::error::need_buffer) ec = {};
      if (ec) return self->finish(false);
      if (self->parser.is_done()) return self->finish(true);
      self->read();
    });
  }
  void finish(bool ok) {
    if (opened) --st.open;
    opened = false;
    ok ? ++st.ok : ++st.failed;
    beast::error_code ec;
    stream.socket().close(ec);
    done();
  }
  beast::tcp_stream stream;
  tcp::endpoint ep;
  Stats& st;
  std::function<void()> done;
  http::request<http::string_body> req;
  http::response_parser<http::buffer_body> parser;
  beast::flat_buffer buf;
  char chunk[8192];
  Clock::time_point t0;
  bool got_first = false, opened = false;
};

double pct(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: fabric_load open|closed|hold HOST:PORT N SECONDS MAX_TOKENS\n");
    return 2;
  }
  const std::string mode = argv[1], target = argv[2];
  const double n = std::atof(argv[3]), secs = std::atof(argv[4]);
  const int max_tokens = std::atoi(argv[5]);
  const auto colon = target.rfind(':');
  const tcp::endpoint ep(net::ip::make_address(target.substr(0, colon)),
                         static_cast<unsigned short>(std::atoi(target.c_str() + colon + 1)));
  const std::string body = "{\"model\":\"llama3-8b\",\"stream\":true,\"max_tokens\":" + std::to_string(max_tokens) +
                           ",\"messages\":[{\"role\":\"user\",\"content\":\"benchmark\"}]}";
  net::io_context ioc(1);
  Stats st;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(secs));
  net::steady_timer timer(ioc);
  std::function<void()> tick, loop;  // outlive ioc.run(): the handlers call them
  if (mode == "open") {
    const auto gap = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / n));
    auto next = std::make_shared<Clock::time_point>(start);
    tick = [&, next] {
      if (*next >= end) return;
      std::make_shared<Call>(ioc, ep, body, st, [] {})->go();
      *next += gap;
      timer.expires_at(*next);
      timer.async_wait([&](beast::error_code) { tick(); });
    };
    tick();
  } else if (mode == "closed") {
    loop = [&] {
      if (Clock::now() >= end) return;
      std::make_shared<Call>(ioc, ep, body, st, [&] { net::post(ioc, loop); })->go();
    };
    for (int i = 0; i < static_cast<int>(n); ++i) loop();
  } else {
    for (int i = 0; i < static_cast<int>(n); ++i) std::make_shared<Call>(ioc, ep, body, st, [] {})->go();
  }
  ioc.run();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf(
      "{\"mode\":\"%s\",\"target\":\"%s\",\"sent\":%llu,\"ok\":%llu,\"failed\":%llu,\"ttfb_p50_ms\":%.3f,"
      "\"ttfb_p99_ms\":%.3f,\"completed_per_s\":%.1f,\"max_open_streams\":%d,\"wall_s\":%.2f}\n",
      mode.c_str(), target.c_str(), static_cast<unsigned long long>(st.sent), static_cast<unsigned long long>(st.ok),
      static_cast<unsigned long long>(st.failed), pct(st.ttfb_ms, 0.5), pct(st.ttfb_ms, 0.99),
      static_cast<double>(st.ok) / std::min(wall, secs > 0 ? std::max(secs, 1e-9) : wall), st.max_open, wall);
  return 0;
}
