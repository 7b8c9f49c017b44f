#include "serve/http_server.hpp"

#include <fmt/format.h>
#include <malloc.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.hpp"
#include "serve/openai.hpp"

namespace infergrid::serve {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

struct HttpServer::Shared {
  Handler handler;
  ServerLimits limits;
  std::shared_ptr<ServerStats> stats;
  std::optional<ssl::context> tls;
  std::mutex mu;
  std::map<std::string, int> per_client;  // open connections by client address, under mu
};

void ServerStats::write(std::string& out, const std::string& p) const {
  auto head = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {0}{1} {2}\n# TYPE {0}{1} {3}\n", p, name, help, type);
  };
  auto one = [&](const char* name, const char* type, const char* help, auto v) {
    head(name, type, help);
    out += fmt::format("{}{} {}\n", p, name, v);
  };
  // One counter family over a label: {label value, count}.
  using Labelled = std::pair<const char*, std::uint64_t>;
  auto family = [&](const char* name, const char* help, const char* label, std::initializer_list<Labelled> vs) {
    head(name, "counter", help);
    for (const auto& [value, n] : vs) out += fmt::format("{}{}{{{}=\"{}\"}} {}\n", p, name, label, value, n);
  };
  one("connections", "gauge", "Open client connections.", connections.load());
  one("connections_accepted_total", "counter", "Client connections accepted.", accepted.load());
  family("connections_rejected_total", "Client connections closed at once by a limit.", "limit",
         {{"total", rejected_total.load()}, {"per_client", rejected_per_client.load()}, {"descriptors", accept_errors.load()}});
  family("client_timeouts_total", "Client connections closed by a timeout, by phase.", "phase",
         {{"idle", idle_timeouts.load()}, {"header", header_timeouts.load()}, {"body", body_timeouts.load()},
          {"write", write_timeouts.load()}});
  one("slow_clients_total", "counter", "Clients dropped for leaving too many bytes unread.", slow_readers.load());
  one("malformed_requests_total", "counter", "Requests refused before parsing their body (400).", bad_requests.load());
  one("handler_errors_total", "counter", "Requests whose handler threw (answered 500).", handler_errors.load());
  one("tls_handshake_failures_total", "counter", "TLS handshakes that failed.", tls_failures.load());
}

namespace {

using Plain = beast::tcp_stream;
using Tls = beast::ssl_stream<beast::tcp_stream>;

template <class Stream>
class Session final : public Reply, public std::enable_shared_from_this<Session<Stream>> {
 public:
  template <class... A>
  Session(std::shared_ptr<HttpServer::Shared> sh, std::string peer, A&&... a)
      : stream_(std::forward<A>(a)...), sh_(std::move(sh)), peer_(std::move(peer)) {}

  ~Session() override {
    sh_->stats->connections.fetch_sub(1);
    std::lock_guard<std::mutex> lock(sh_->mu);
    if (auto it = sh_->per_client.find(peer_); it != sh_->per_client.end() && --it->second <= 0)
      sh_->per_client.erase(it);
  }

  void start() {
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (std::is_same_v<Stream, Tls>) self->handshake();
      else self->read();
    });
  }

  void send(int status, const std::string& type, std::string body, Headers headers) override {
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(status), version_);
    res->set(http::field::server, "infergrid");
    res->set(http::field::content_type, type);
    for (auto& [k, v] : headers) res->set(k, v);
    res->keep_alive(keep_alive_);
    res->body() = std::move(body);
    res->prepare_payload();
    post([self = this->shared_from_this(), res] {
      self->queue_.push_back(Item{Item::kWhole, {}, res});
      self->pump();
    });
  }

  void begin_stream(int status, const std::string& type, Headers headers) override {
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(status), version_);
    res->set(http::field::server, "infergrid");
    res->set(http::field::content_type, type);
    res->set(http::field::cache_control, "no-cache");
    for (auto& [k, v] : headers) res->set(k, v);
    if (version_ >= 11) {
      res->keep_alive(keep_alive_);
      res->chunked(true);
    } else {  // HTTP/1.0 has no chunked encoding: the body runs until the connection closes
      raw_ = true;
      keep_alive_ = false;
      res->keep_alive(false);
    }
    post([self = this->shared_from_this(), res] {
      self->queue_.push_back(Item{Item::kHeader, {}, res});
      self->pump();
    });
  }

  void write(std::string chunk) override {
    if (chunk.empty() || gone_) return;
    const std::size_t n = chunk.size();
    if (queued_.fetch_add(n) + n > sh_->limits.max_queued_bytes) {
      post([self = this->shared_from_this()] {
        if (self->gone_) return;
        self->sh_->stats->slow_readers.fetch_add(1);
        self->lost();
      });
      return;
    }
    post([self = this->shared_from_this(), c = std::move(chunk)]() mutable {
      self->queue_.push_back(Item{Item::kChunk, std::move(c), nullptr});
      self->pump();
    });
  }

  void end() override {
    post([self = this->shared_from_this()] {
      self->queue_.push_back(Item{Item::kLast, {}, nullptr});
      self->pump();
    });
  }

  void abort() override {
    post([self = this->shared_from_this()] { self->lost(); });
  }

  bool gone() const override { return gone_; }

  void on_close(std::function<void()> f) override {
    post([self = this->shared_from_this(), gen = req_gen_.load(), f = std::move(f)]() mutable {
      if (self->answered_ || gen != self->req_gen_.load()) return;
      if (self->gone_) return f();
      self->close_cbs_.push_back(std::move(f));
    });
  }

  std::size_t queued_bytes() const override { return queued_.load(); }

  void on_drain(std::size_t low, std::function<void()> f) override {
    post([self = this->shared_from_this(), gen = req_gen_.load(), low, f = std::move(f)]() mutable {
      if (gen != self->req_gen_.load()) return;
      if (self->gone_ || self->queued_.load() <= low) return f();
      self->drain_low_ = low;
      self->drain_cb_ = std::move(f);
    });
  }

  const std::string& peer() const override { return peer_; }

 private:
  struct Item {
    enum Kind { kWhole, kHeader, kChunk, kLast } kind;
    std::string data;
    std::shared_ptr<http::response<http::string_body>> res;
  };

  auto& tcp_layer() { return beast::get_lowest_layer(stream_); }

  template <class F>
  void post(F&& f) {
    net::post(stream_.get_executor(), std::forward<F>(f));
  }

  void handshake() {
    if constexpr (std::is_same_v<Stream, Tls>) {
      tcp_layer().expires_after(std::chrono::milliseconds(sh_->limits.header_timeout_ms));
      stream_.async_handshake(ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
        if (ec) {
          self->sh_->stats->tls_failures.fetch_add(1);
          return self->close();
        }
        self->read();
      });
    }
  }

  // Waits for the next request's first byte (idle timeout), then reads its header and body.
  void read() {
    answered_ = false;
    close_cbs_.clear();
    if (buffer_.size() > 0) return read_header();
    if (buffer_.capacity() > 16384) buffer_.shrink_to_fit();  // idle connections stay small
    tcp_layer().expires_after(std::chrono::milliseconds(sh_->limits.idle_timeout_ms));
    stream_.async_read_some(buffer_.prepare(1024), [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
      if (ec) {
        if (ec == beast::error::timeout) self->sh_->stats->idle_timeouts.fetch_add(1);
        return self->close();
      }
      self->buffer_.commit(n);
      self->read_header();
    });
  }

  void read_header() {
    parser_.emplace();
    parser_->body_limit(sh_->limits.body_limit);
    parser_->header_limit(static_cast<std::uint32_t>(sh_->limits.header_limit));
    tcp_layer().expires_after(std::chrono::milliseconds(sh_->limits.header_timeout_ms));
    http::async_read_header(stream_, buffer_, *parser_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec == beast::error::timeout) self->sh_->stats->header_timeouts.fetch_add(1);
      if (ec) return self->on_read(ec);
      if (self->parser_->is_done()) return self->on_read(ec);
      const auto& h = self->parser_->get();
      if (beast::iequals(h[http::field::expect], "100-continue")) {  // curl waits for it on large bodies
        auto cont = std::make_shared<std::string>("HTTP/1.1 100 Continue\r\n\r\n");
        net::async_write(self->stream_, net::buffer(*cont), [self, cont](beast::error_code ec, std::size_t) {
          if (ec) return self->close();
          self->read_body();
        });
        return;
      }
      self->read_body();
    });
  }

  void read_body() {
    tcp_layer().expires_after(std::chrono::milliseconds(sh_->limits.body_timeout_ms));
    http::async_read(stream_, buffer_, *parser_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec == beast::error::timeout) self->sh_->stats->body_timeouts.fetch_add(1);
      self->on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == net::error::eof || ec == beast::error::timeout) return close();
    if (ec == http::error::body_limit) {
      keep_alive_ = false;
      drain_ = true;  // read the rest of the upload, so the client sees the answer
      version_ = 11;
      send(413, "application/json",
           error_body({413, "invalid_request_error", "the request body is larger than the limit", "", "body_too_large"}),
           {});
      return;
    }
    if (ec) {
      if (ec != http::error::partial_message && ec.category() == http::make_error_code(http::error::bad_target).category()) {  // any parse error: the client is told
        sh_->stats->bad_requests.fetch_add(1);
        keep_alive_ = false;
        version_ = 11;
        const bool big = ec == http::error::header_limit;
        send(big ? 431 : 400, "application/json",
             error_body({big ? 431 : 400, "invalid_request_error", "malformed HTTP request: " + ec.message(), "",
                         big ? "header_too_large" : "malformed_request"}),
             {});
        return;
      }
      return close();
    }
    tcp_layer().expires_never();
    Request req = parser_->release();
    parser_.reset();
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    req_gen_.fetch_add(1);
    watch();
    try {
      sh_->handler(std::move(req), this->shared_from_this());
    } catch (const std::exception& e) {
      handler_failed(e.what());
    } catch (...) {
      handler_failed("unknown exception");
    }
  }

  void handler_failed(const char* what) {
    sh_->stats->handler_errors.fetch_add(1);
    std::fprintf(stderr, "infergrid: a request handler failed: %s\n", what);
    // Whatever was queued is dropped; if the answer had begun, the connection is cut.
    if (began_ || !queue_.empty()) return lost();
    keep_alive_ = false;
    send(500, "application/json", error_body({500, "internal_error", "the server failed on this request", "", "internal_error"}), {});
  }

  // While an answer is being made, notice the client closing its side (as vLLM does, to abort
  // the request): a readable socket with nothing to read is a closed one.
  void watch() {
    const auto gen = ++watch_gen_;
    tcp_layer().socket().async_wait(tcp::socket::wait_read, [self = this->shared_from_this(), gen](beast::error_code ec) {
      if (ec || gen != self->watch_gen_ || self->answered_ || self->gone_) return;
      char c;
      const ssize_t n = ::recv(self->tcp_layer().socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) return;  // a pipelined request: it waits in the socket until this answer is done
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return self->watch();
      self->lost();
    });
  }

  void unwatch() {
    ++watch_gen_;
    beast::error_code ec;
    tcp_layer().socket().cancel(ec);
  }

  void pump() {
    if (writing_ || queue_.empty()) return;
    if (gone_) {
      queue_.clear();
      return;
    }
    writing_ = true;
    Item& it = queue_.front();
    auto self = this->shared_from_this();
    auto done = [self](beast::error_code ec, std::size_t) { self->on_write(ec); };
    tcp_layer().expires_after(std::chrono::milliseconds(sh_->limits.write_timeout_ms));
    switch (it.kind) {
      case Item::kWhole:
        began_ = true;
        http::async_write(stream_, *it.res, done);
        break;
      case Item::kHeader:
        began_ = true;
        serializer_ = std::make_shared<http::response_serializer<http::string_body>>(*it.res);
        http::async_write_header(stream_, *serializer_, done);
        break;
      case Item::kChunk:
        if (raw_) net::async_write(stream_, net::buffer(it.data), done);
        else net::async_write(stream_, http::make_chunk(net::buffer(it.data)), done);
        break;
      case Item::kLast:
        if (raw_) net::async_write(stream_, net::const_buffer(), done);
        else net::async_write(stream_, http::make_chunk_last(), done);
        break;
    }
  }

  void on_write(beast::error_code ec) {
    writing_ = false;
    if (queue_.empty()) return;
    const auto kind = queue_.front().kind;
    if (kind == Item::kChunk) queued_.fetch_sub(queue_.front().data.size());
    queue_.pop_front();
    if (gone_) {  // lost() while this write was in flight
      queue_.clear();
      return;
    }
    if (queue_.empty()) tcp_layer().expires_never();  // no write pending: no write timeout
    if (ec) {
      if (ec == beast::error::timeout) sh_->stats->write_timeouts.fetch_add(1);
      return lost();
    }
    if (drain_cb_ && queued_.load() <= drain_low_) {
      auto f = std::move(drain_cb_);
      drain_cb_ = nullptr;
      f();
    }
    if (kind == Item::kWhole || kind == Item::kLast) {  // the answer is complete
      answered_ = true;
      began_ = false;
      close_cbs_.clear();
      drain_cb_ = nullptr;
      unwatch();
      serializer_.reset();
      tcp_layer().expires_never();
      if (drain_) return drain();
      if (!keep_alive_ || raw_) return close();
      if (queue_.empty()) read();
    }
    pump();
  }

  // After an early answer: discard what the client still sends (at most 64 MiB or 5 s), then close.
  void drain() {
    if (!scratch_) scratch_ = std::make_unique<std::array<char, 65536>>();
    beast::error_code ec;
    tcp_layer().socket().shutdown(tcp::socket::shutdown_send, ec);
    tcp_layer().expires_after(std::chrono::seconds(5));
    tcp_layer().async_read_some(net::buffer(*scratch_), [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
      self->drained_ += n;
      if (ec || self->drained_ > (64u << 20)) {
        beast::error_code ignore;
        self->tcp_layer().socket().close(ignore);
        return;
      }
      self->drain();
    });
  }

  // The client is gone (or must go): nothing more is written; whoever made the answer is told.
  void lost() {
    if (gone_) return;
    gone_ = true;
    // A write in flight still reads its item (the response, the chunk's bytes): it stays until
    // on_write; the rest goes.
    if (writing_ && !queue_.empty()) queue_.erase(queue_.begin() + 1, queue_.end());
    else queue_.clear();
    drain_cb_ = nullptr;
    beast::error_code ec;
    tcp_layer().socket().shutdown(tcp::socket::shutdown_both, ec);
    tcp_layer().close();
    auto cbs = std::move(close_cbs_);
    close_cbs_.clear();
    if (!answered_)
      for (auto& f : cbs) f();
  }

  void close() {
    gone_ = true;
    beast::error_code ec;
    tcp_layer().socket().shutdown(tcp::socket::shutdown_send, ec);
    tcp_layer().close();
  }

  Stream stream_;
  std::shared_ptr<HttpServer::Shared> sh_;
  std::string peer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<http::response_serializer<http::string_body>> serializer_;
  std::deque<Item> queue_;
  std::vector<std::function<void()>> close_cbs_;
  std::function<void()> drain_cb_;
  std::size_t drain_low_ = 0;
  std::atomic<std::size_t> queued_{0};
  bool writing_ = false, keep_alive_ = true, drain_ = false, raw_ = false, answered_ = false, began_ = false;
  std::uint64_t watch_gen_ = 0;
  std::atomic<std::uint64_t> req_gen_{0};  // requests handed to the handler so far
  std::unique_ptr<std::array<char, 65536>> scratch_;
  std::size_t drained_ = 0;
  std::atomic<bool> gone_{false};
  unsigned version_ = 11;
};

// A connection refused by a limit gets a short answer written without waiting, then is closed.
void refuse(tcp::socket& s, int status, const std::string& message) {
  const std::string body = error_body({status, status == 429 ? "rate_limit_exceeded" : "service_unavailable", message, "",
                                       status == 429 ? "too_many_connections" : "server_full"});
  const std::string msg = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{}",
      status, status == 429 ? "Too Many Requests" : "Service Unavailable", body.size(), body);
  beast::error_code ec;
  s.non_blocking(true, ec);
  s.write_some(net::buffer(msg), ec);
  s.shutdown(tcp::socket::shutdown_both, ec);
  s.close(ec);
}

}  // namespace

HttpServer::HttpServer(net::io_context& ioc, const std::string& host, unsigned short port, Handler handler,
                       ServerLimits limits, TlsFiles tls)
    : ioc_(ioc), acceptor_(net::make_strand(ioc)), retry_(acceptor_.get_executor()), trim_(acceptor_.get_executor()), shared_(std::make_shared<Shared>()),
      stats_(std::make_shared<ServerStats>()) {
  shared_->handler = std::move(handler);
  shared_->limits = limits;
  shared_->stats = stats_;
  if (!tls.cert.empty() || !tls.key.empty()) {
    auto& ctx = shared_->tls.emplace(ssl::context::tls_server);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                    ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    beast::error_code ec;
    ctx.use_certificate_chain_file(tls.cert, ec);
    if (ec) core::fail_input(tls.cert, 0, "tls_cert", "cannot load the certificate chain: " + ec.message());
    ctx.use_private_key_file(tls.key, ssl::context::pem, ec);
    if (ec) core::fail_input(tls.key, 0, "tls_key", "cannot load the private key: " + ec.message());
  }
  beast::error_code ec;
  const auto addr = net::ip::make_address(host, ec);
  if (ec) throw std::runtime_error(fmt::format("cannot listen on '{}': not an IP address", host));
  const tcp::endpoint ep{addr, port};
  try {
    acceptor_.open(ep.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(4096);
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error(fmt::format("cannot listen on {}:{}: {}", host, port, e.code().message()));
  }
  port_ = acceptor_.local_endpoint().port();
}

HttpServer::~HttpServer() = default;

void HttpServer::set_handler(Handler h) { shared_->handler = std::move(h); }

void HttpServer::stop() {
  beast::error_code ec;
  acceptor_.close(ec);
  retry_.cancel();
  trim_.cancel();
}

// After a wave of connections has closed, give freed heap (request bodies of up to body_limit,
// buffers) back to the system. What Asio keeps per descriptor is pooled for reuse, not freed: 5,000
// idle connections leave ~12 MB that the next 5,000 reuse without growing.
void HttpServer::trim() {
  trim_.expires_after(std::chrono::seconds(2));
  trim_.async_wait([this](const beast::error_code& ec) {
    if (ec) return;
    const auto now = stats_->connections.load();
    if (high_ - now >= 256) {
      malloc_trim(0);
      high_ = now;
    }
    trim();
  });
}

void HttpServer::accept() {
  acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket s) {
    if (ec == net::error::operation_aborted) return;
    if (ec) {
      // Out of descriptors (EMFILE/ENFILE) or memory: the pending connection stays in the
      // backlog; try again shortly instead of spinning a core.
      stats_->accept_errors.fetch_add(1);
      retry_.expires_after(std::chrono::milliseconds(50));
      retry_.async_wait([this](const beast::error_code& e) {
        if (!e) accept();
      });
      return;
    }
    stats_->accepted.fetch_add(1);
    high_ = std::max(high_, stats_->connections.load() + 1);
    beast::error_code ignore;
    const auto remote = s.remote_endpoint(ignore);
    const std::string peer = ignore ? std::string("?") : remote.address().to_string();
    const auto& lim = shared_->limits;
    bool over_total = false, over_client = false;
    {
      std::lock_guard<std::mutex> lock(shared_->mu);
      if (stats_->connections.load() >= lim.max_connections) over_total = true;
      else if (shared_->per_client[peer] >= lim.max_connections_per_client) over_client = true;
      else {
        ++shared_->per_client[peer];
        stats_->connections.fetch_add(1);
      }
      if (over_client && shared_->per_client[peer] == 0) shared_->per_client.erase(peer);
    }
    if (over_total) {
      stats_->rejected_total.fetch_add(1);
      refuse(s, 503, fmt::format("the server holds its limit of {} connections", lim.max_connections));
    } else if (over_client) {
      stats_->rejected_per_client.fetch_add(1);
      refuse(s, 429, fmt::format("at most {} connections per client address", lim.max_connections_per_client));
    } else {
      s.set_option(tcp::no_delay(true), ignore);
      if (shared_->tls) std::make_shared<Session<Tls>>(shared_, peer, std::move(s), *shared_->tls)->start();
      else std::make_shared<Session<Plain>>(shared_, peer, std::move(s))->start();
    }
    accept();
  });
}

void run_guarded(net::io_context& ioc, const char* who) {
  for (;;) {
    try {
      ioc.run();
      return;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "infergrid %s: a handler failed and was dropped: %s\n", who, e.what());
    } catch (...) {
      std::fprintf(stderr, "infergrid %s: a handler failed and was dropped\n", who);
    }
  }
}

bool openai_front(const Request& req, Reply& reply, int health_status, const std::function<std::string()>& metrics,
                  const std::vector<std::string>& models, ApiRequest& out) {
  const std::string target(req.target());
  const auto path = target.substr(0, target.find('?'));
  if (path == "/health") {
    reply.send(health_status, "text/plain", health_status == 200 ? "ok\n" : "unavailable\n");
    return false;
  }
  if (path == "/metrics") {
    reply.send(200, "text/plain; version=0.0.4", metrics());
    return false;
  }
  if (path == "/v1/models") {
    nlohmann::json j;
    j["object"] = "list";
    j["data"] = nlohmann::json::array();
    for (const auto& m : models) j["data"].push_back({{"id", m}, {"object", "model"}, {"created", 0}, {"owned_by", "infergrid"}});
    reply.send(200, "application/json", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return false;
  }
  Endpoint ep;
  if (path == "/v1/chat/completions") ep = Endpoint::kChat;
  else if (path == "/v1/completions") ep = Endpoint::kCompletions;
  else return send_error(reply, 404, "invalid_request_error", "unknown path " + path, "", "not_found"), false;
  if (req.method() != http::verb::post)
    return send_error(reply, 405, "invalid_request_error", "use POST", "", "method_not_allowed"), false;
  if (auto e = parse_request(req.body(), ep, out)) return send_error(reply, e->status, e->type, e->message, e->param, e->code), false;
  if (std::find(models.begin(), models.end(), out.model) == models.end())
    return send_error(reply, 404, "invalid_request_error", "The model '" + out.model + "' does not exist", "model",
                      "model_not_found"),
           false;
  if (const auto h = req.find("x-infergrid-priority"); h != req.end()) {
    const auto p = parse_priority(std::string_view(h->value().data(), h->value().size()));
    if (!p)
      return send_error(reply, 400, "invalid_request_error", "x-infergrid-priority must be critical, interactive or batch",
                        "x-infergrid-priority"),
             false;
    out.priority = *p;
  }
  return true;
}

void send_error(Reply& r, int status, const std::string& type, const std::string& message, const std::string& param,
                const std::string& code, Headers headers) {
  r.send(status, "application/json", error_body({status, type, message, param, code}), std::move(headers));
}

}  // namespace infergrid::serve
