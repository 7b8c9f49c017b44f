#include "serve/http_server.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <array>
#include <deque>
#include <nlohmann/json.hpp>

#include "serve/openai.hpp"

namespace infergrid::serve {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;

namespace {

class Session final : public Reply, public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& s, const Handler& h, std::size_t limit) : stream_(std::move(s)), handler_(h), limit_(limit) {}

  void start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read(); });
  }

  void send(int status, const std::string& type, std::string body, Headers headers) override {
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(status), version_);
    res->set(http::field::server, "infergrid");
    res->set(http::field::content_type, type);
    for (auto& [k, v] : headers) res->set(k, v);
    res->keep_alive(keep_alive_);
    res->body() = std::move(body);
    res->prepare_payload();
    post([self = shared_from_this(), res] {
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
    post([self = shared_from_this(), res] {
      self->queue_.push_back(Item{Item::kHeader, {}, res});
      self->pump();
    });
  }

  void write(std::string chunk) override {
    if (chunk.empty()) return;
    post([self = shared_from_this(), c = std::move(chunk)]() mutable {
      self->queue_.push_back(Item{Item::kChunk, std::move(c), nullptr});
      self->pump();
    });
  }

  void end() override {
    post([self = shared_from_this()] {
      self->queue_.push_back(Item{Item::kLast, {}, nullptr});
      self->pump();
    });
  }

  void abort() override {
    post([self = shared_from_this()] {
      self->gone_ = true;
      beast::error_code ec;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
      self->stream_.close();
    });
  }

  bool gone() const override { return gone_; }

 private:
  struct Item {
    enum Kind { kWhole, kHeader, kChunk, kLast } kind;
    std::string data;
    std::shared_ptr<http::response<http::string_body>> res;
  };

  template <class F>
  void post(F&& f) {
    net::post(stream_.get_executor(), std::forward<F>(f));
  }

  void read() {
    parser_.emplace();
    parser_->body_limit(limit_);
    parser_->header_limit(64 * 1024);
    stream_.expires_after(std::chrono::seconds(300));  // idle keep-alive connections close
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
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
      if (ec == http::error::bad_method || ec == http::error::bad_target || ec == http::error::bad_version ||
          ec == http::error::bad_field || ec == http::error::bad_value || ec == http::error::bad_chunk ||
          ec == http::error::bad_content_length || ec == http::error::header_limit) {
        keep_alive_ = false;
        version_ = 11;
        send(400, "application/json", error_body({400, "invalid_request_error", "malformed HTTP request: " + ec.message(), "", ""}), {});
        return;
      }
      return close();
    }
    stream_.expires_never();
    Request req = parser_->release();
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    handler_(std::move(req), shared_from_this());
  }

  void pump() {
    if (writing_ || queue_.empty()) return;
    if (gone_) {
      queue_.clear();
      return;
    }
    writing_ = true;
    Item& it = queue_.front();
    auto self = shared_from_this();
    auto done = [self](beast::error_code ec, std::size_t) { self->on_write(ec); };
    switch (it.kind) {
      case Item::kWhole:
        http::async_write(stream_, *it.res, done);
        break;
      case Item::kHeader:
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
    const auto kind = queue_.front().kind;
    queue_.pop_front();
    if (ec) {
      gone_ = true;
      queue_.clear();
      return close();
    }
    if (kind == Item::kWhole || kind == Item::kLast) {  // the answer is complete
      serializer_.reset();
      if (drain_) return drain();
      if (!keep_alive_) return close();
      if (queue_.empty()) read();
    }
    pump();
  }

  // After an early answer: discard what the client still sends (at most 64 MiB or 5 s), then close.
  void drain() {
    close();
    gone_ = false;
    stream_.expires_after(std::chrono::seconds(5));
    stream_.async_read_some(net::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
      self->drained_ += n;
      if (ec || self->drained_ > (64u << 20)) {
        self->gone_ = true;
        beast::error_code ignore;
        self->stream_.socket().close(ignore);
        return;
      }
      self->drain();
    });
  }

  void close() {
    gone_ = true;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<http::response_serializer<http::string_body>> serializer_;
  const Handler& handler_;
  std::size_t limit_;
  std::deque<Item> queue_;
  bool writing_ = false, keep_alive_ = true, drain_ = false, raw_ = false;
  std::array<char, 65536> scratch_{};
  std::size_t drained_ = 0;
  std::atomic<bool> gone_{false};
  unsigned version_ = 11;
};

}  // namespace

HttpServer::HttpServer(net::io_context& ioc, const std::string& host, unsigned short port, Handler handler,
                       std::size_t body_limit)
    : ioc_(ioc), acceptor_(net::make_strand(ioc)), handler_(std::move(handler)), body_limit_(body_limit) {
  const tcp::endpoint ep{net::ip::make_address(host), port};
  acceptor_.open(ep.protocol());
  acceptor_.set_option(net::socket_base::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen(4096);
  port_ = acceptor_.local_endpoint().port();
}

void HttpServer::stop() {
  beast::error_code ec;
  acceptor_.close(ec);
}

void HttpServer::accept() {
  acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket s) {
    if (ec == net::error::operation_aborted) return;
    if (!ec) {
      s.set_option(tcp::no_delay(true), ec);
      std::make_shared<Session>(std::move(s), handler_, body_limit_)->start();
    }
    accept();
  });
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
                const std::string& code) {
  r.send(status, "application/json", error_body({status, type, message, param, code}));
}

}  // namespace infergrid::serve
