#pragma once
// A small asynchronous HTTP/1.1 server on Boost.Beast: keep-alive connections, each on its own
// strand; a handler answers a request whole or as a chunked stream (server-sent events), from any
// thread. Plain TCP or TLS. Bounded: connections in total and per client address, timeouts for
// an idle keep-alive, a request's header and body and each write to the client, bytes queued for
// a client that does not read. A handler that throws gets a 500 in the OpenAI format, never a
// crash. A client that goes away while its answer is being made is noticed (the handler is told).
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace infergrid::serve {

namespace http = boost::beast::http;
using Headers = std::vector<std::pair<std::string, std::string>>;

// The answer to one request. Thread-safe: calls are posted to the connection's strand.
class Reply {
 public:
  virtual ~Reply() = default;
  virtual void send(int status, const std::string& content_type, std::string body, Headers headers = {}) = 0;
  virtual void begin_stream(int status, const std::string& content_type, Headers headers = {}) = 0;
  virtual void write(std::string chunk) = 0;
  virtual void end() = 0;
  // Drops the connection at once (fault injection, or an upstream that died mid-answer).
  virtual void abort() = 0;
  // True once the client has gone away (it closed, a write failed or timed out, it read too slowly).
  virtual bool gone() const = 0;
  // `f` runs once, on the connection's strand, when the client goes away before the answer is
  // complete (at once if it already has). Not called after a complete answer.
  virtual void on_close(std::function<void()> f) = 0;
  // Bytes written but not yet taken by the client; `f` runs once when they fall to `low` or less
  // (at once if they already have): backpressure for relays.
  virtual std::size_t queued_bytes() const = 0;
  virtual void on_drain(std::size_t low, std::function<void()> f) = 0;
  // The client's address ("127.0.0.1").
  virtual const std::string& peer() const = 0;
};

using Request = http::request<http::string_body>;
using Handler = std::function<void(Request&& req, std::shared_ptr<Reply> reply)>;

struct ServerLimits {
  std::size_t body_limit = 8 << 20;
  std::size_t header_limit = 64 << 10;
  int max_connections = 20000;            // open client connections; past it: 503 and close
  int max_connections_per_client = 4096;  // per client address; past it: 429 and close
  int idle_timeout_ms = 60000;            // keep-alive: waiting for the next request's first byte
  int header_timeout_ms = 10000;          // from a request's first byte to its last header byte
  int body_timeout_ms = 60000;            // reading the request's body
  int write_timeout_ms = 30000;           // one write the client does not take: closed
  std::size_t max_queued_bytes = 16 << 20;  // queued for a client that does not read: dropped
};

struct TlsFiles {
  std::string cert, key;  // PEM files; empty: plain TCP
};

// What the server saw, for /metrics.
struct ServerStats {
  std::atomic<std::int64_t> connections{0};
  std::atomic<std::uint64_t> accepted{0}, rejected_total{0}, rejected_per_client{0}, accept_errors{0};
  std::atomic<std::uint64_t> idle_timeouts{0}, header_timeouts{0}, body_timeouts{0}, write_timeouts{0};
  std::atomic<std::uint64_t> slow_readers{0}, bad_requests{0}, handler_errors{0}, tls_failures{0};
  // Appends the Prometheus text of these counters, names starting with `prefix`.
  void write(std::string& out, const std::string& prefix) const;
};

class HttpServer {
 public:
  // Binds host:port (port 0: any free port) and listens; start() accepts on `ioc`. Between the
  // two a process may fork: the children share the listening socket. Throws core::InputError
  // when the TLS files cannot be read.
  HttpServer(boost::asio::io_context& ioc, const std::string& host, unsigned short port, Handler handler,
             ServerLimits limits = {}, TlsFiles tls = {});
  ~HttpServer();
  void start() {
    accept();
    trim();
  }
  void set_handler(Handler h);  // before start()
  unsigned short port() const { return port_; }
  void stop();
  const ServerStats& stats() const { return *stats_; }

  struct Shared;  // what the connections share with the server (limits, counts, TLS context)

 private:
  void accept();
  void trim();
  boost::asio::io_context& ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer retry_, trim_;
  std::int64_t high_ = 0;  // most connections open since the last trim (on the acceptor's strand)
  std::shared_ptr<Shared> shared_;
  std::shared_ptr<ServerStats> stats_;
  unsigned short port_ = 0;
};

// Runs `ioc` on this thread until it stops; an exception that escapes a completion handler is
// logged to stderr and the loop goes on (a process never dies of one request).
void run_guarded(boost::asio::io_context& ioc, const char* who);

struct ApiRequest;
// What the engine and the gateway answer alike: GET /health (with `health_status`), /metrics
// (from `metrics`), /v1/models (`models`); 404 for other paths, 405 for other methods, 400 for a
// bad body, 404 for a model not in `models`. Returns true, with `out` parsed (and its priority
// taken from x-infergrid-priority), when the request is an inference the caller must serve.
bool openai_front(const Request& req, Reply& reply, int health_status, const std::function<std::string()>& metrics,
                  const std::vector<std::string>& models, ApiRequest& out);

// An OpenAI error answer.
void send_error(Reply& r, int status, const std::string& type, const std::string& message,
                const std::string& param = "", const std::string& code = "", Headers headers = {});

}  // namespace infergrid::serve
