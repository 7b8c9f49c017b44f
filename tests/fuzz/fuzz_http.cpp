// libFuzzer target for the HTTP front of the engine and the gateway: request lines, headers and
// bodies as they come off the socket (several pipelined requests in one input), parsed by Beast
// with the server's limits, then answered by openai_front. The only acceptable outcomes are a
// parse error, an inference to serve, or one reply whose error body is JSON with a message; an
// exception escaping is a crash (libFuzzer aborts on it).
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cmath>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/geo.hpp"
#include "serve/http_server.hpp"
#include "serve/openai.hpp"

namespace ig = infergrid;
namespace http = boost::beast::http;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// An OpenAI error body: JSON (invalid UTF-8 from the client replaced, never passed through)
// with a string error.message.
void check_error_body(const std::string& body) {
  const auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  check(!j.is_discarded());
  check(j.is_object() && j.contains("error") && j["error"].is_object());
  check(j["error"].contains("message") && j["error"]["message"].is_string());
}

class RecordingReply final : public ig::serve::Reply {
 public:
  struct Sent {
    int status;
    std::string content_type, body;
  };
  std::vector<Sent> sent;
  int streams = 0;

  void send(int status, const std::string& content_type, std::string body, ig::serve::Headers) override {
    sent.push_back({status, content_type, std::move(body)});
  }
  void begin_stream(int, const std::string&, ig::serve::Headers) override { ++streams; }
  void write(std::string) override {}
  void end() override {}
  void abort() override {}
  bool gone() const override { return false; }
  void on_close(std::function<void()>) override {}
  std::size_t queued_bytes() const override { return 0; }
  void on_drain(std::size_t, std::function<void()> f) override { f(); }
  const std::string& peer() const override { return peer_; }

 private:
  std::string peer_ = "127.0.0.1";
};

const std::vector<std::string> kModels{"llama3-8b"};
const std::function<std::string()> kMetrics = [] { return std::string("infergrid_up 1\n"); };

void answer(const ig::serve::Request& req) {
  RecordingReply reply;
  ig::serve::ApiRequest api;
  const bool serve = ig::serve::openai_front(req, reply, 200, kMetrics, kModels, api);
  check(reply.streams == 0);
  if (serve) {  // an inference for the caller: nothing answered yet, and a request that holds
    check(reply.sent.empty());
    check(api.model == "llama3-8b" && api.prompt_tokens >= 1 && api.priority >= 0 && api.priority <= 2);
  } else {
    check(reply.sent.size() == 1);
    const auto& s = reply.sent.front();
    check(s.status >= 200 && s.status < 600 && !s.content_type.empty());
    if (s.status >= 400) check_error_body(s.body);
    if (s.content_type == "application/json") check(!nlohmann::json::parse(s.body, nullptr, false).is_discarded());
  }
  // Error bodies quote what the client sent: the raw target, and any header value.
  check_error_body(ig::serve::error_body({404, "invalid_request_error", std::string(req.target()), "", "not_found"}));
  for (const auto& h : req) {
    const std::string value(h.value());
    ig::core::LatLon p;
    if (ig::core::parse_latlon(value, p))
      check(std::isfinite(p.lat) && std::isfinite(p.lon) && std::fabs(p.lat) <= 90 && std::fabs(p.lon) <= 180);
    check_error_body(ig::serve::error_body({400, "invalid_request_error", value, std::string(h.name_string()), ""}));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const char* p = reinterpret_cast<const char*>(data);
  std::size_t off = 0;
  // Requests one after another on a keep-alive connection, as the server reads them.
  for (int n = 0; n < 8 && off < size; ++n) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(64 * 1024);
    parser.body_limit(1 << 20);
    parser.eager(true);
    boost::beast::error_code ec;
    while (off < size && !parser.is_done()) {
      const std::size_t used = parser.put(boost::asio::buffer(p + off, size - off), ec);
      off += used;
      if (ec || used == 0) break;
    }
    if (!parser.is_done()) {
      if (!ec || ec == http::error::need_more) parser.put_eof(ec);  // the client closed
      if (!parser.is_done()) return 0;
    }
    answer(parser.get());
  }
  return 0;
}
