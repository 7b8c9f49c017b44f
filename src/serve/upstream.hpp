#pragma once
// One connection from the gateway to a backend: plain TCP or TLS (certificate and host name
// verified), resolved, connected and handshaken under one timeout. Async operations go through
// visit(), which hands the stream of either kind to a generic lambda.
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "serve/gateway.hpp"

namespace infergrid::serve {

// The TLS client context of an https:// backend: verifies the peer against `ca_file` (or the
// system's store when empty). Throws core::InputError when the CA file cannot be read.
std::shared_ptr<boost::asio::ssl::context> make_client_tls(const BackendConfig& b, const std::string& config_file);

class Upstream : public std::enable_shared_from_this<Upstream> {
 public:
  using Done = std::function<void(boost::beast::error_code, const char* stage)>;
  Upstream(boost::asio::any_io_executor ex, const BackendConfig& b, boost::asio::ssl::context* tls);
  // Resolves, connects and (https) handshakes within timeout_ms; stage names the failing step.
  void connect(int timeout_ms, Done done);
  template <class F>
  void visit(F&& f) {
    if (tls_) f(*tls_);
    else f(*plain_);
  }
  boost::beast::tcp_stream& tcp() { return tls_ ? boost::beast::get_lowest_layer(*tls_) : *plain_; }
  void close();

 private:
  const BackendConfig& b_;
  boost::asio::ip::tcp::resolver resolver_;
  std::optional<boost::beast::tcp_stream> plain_;
  std::optional<boost::beast::ssl_stream<boost::beast::tcp_stream>> tls_;
};

}  // namespace infergrid::serve
