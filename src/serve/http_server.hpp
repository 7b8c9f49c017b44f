#pragma once
// A small asynchronous HTTP/1.1 server on Boost.Beast: keep-alive connections, each on its own
// strand; a handler answers a request whole or as a chunked stream (server-sent events), from any
// thread. Bodies above the limit get 413 with an OpenAI error body.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
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
  // True once the client has gone away (a write failed).
  virtual bool gone() const = 0;
};

using Request = http::request<http::string_body>;
using Handler = std::function<void(Request&& req, std::shared_ptr<Reply> reply)>;

class HttpServer {
 public:
  // Binds host:port (port 0: any free port) and listens; start() accepts on `ioc`. Between the
  // two a process may fork: the children share the listening socket.
  HttpServer(boost::asio::io_context& ioc, const std::string& host, unsigned short port, Handler handler,
             std::size_t body_limit = 8 << 20);
  void start() { accept(); }
  unsigned short port() const { return port_; }
  void stop();

 private:
  void accept();
  boost::asio::io_context& ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  Handler handler_;
  std::size_t body_limit_;
  unsigned short port_ = 0;
};

struct ApiRequest;
// What the engine and the gateway answer alike: GET /health (with `health_status`), /metrics
// (from `metrics`), /v1/models (`models`); 404 for other paths, 405 for other methods, 400 for a
// bad body, 404 for a model not in `models`. Returns true, with `out` parsed (and its priority
// taken from x-infergrid-priority), when the request is an inference the caller must serve.
bool openai_front(const Request& req, Reply& reply, int health_status, const std::function<std::string()>& metrics,
                  const std::vector<std::string>& models, ApiRequest& out);

// An OpenAI error answer.
void send_error(Reply& r, int status, const std::string& type, const std::string& message,
                const std::string& param = "", const std::string& code = "");

}  // namespace infergrid::serve
