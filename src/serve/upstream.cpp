#include "serve/upstream.hpp"

#include <openssl/ssl.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>

#include "core/error.hpp"

namespace infergrid::serve {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

std::shared_ptr<ssl::context> make_client_tls(const BackendConfig& b, const std::string& config_file) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  ctx->set_verify_mode(ssl::verify_peer);
  beast::error_code ec;
  if (b.ca_file.empty()) ctx->set_default_verify_paths(ec);
  else ctx->load_verify_file(b.ca_file, ec);
  if (ec) core::fail_input(config_file, 0, "ca_file", "cannot load '" + b.ca_file + "': " + ec.message());
  return ctx;
}

Upstream::Upstream(net::any_io_executor ex, const BackendConfig& b, ssl::context* tls) : b_(b), resolver_(ex) {
  if (tls) tls_.emplace(ex, *tls);
  else plain_.emplace(ex);
}

void Upstream::connect(int timeout_ms, Done done) {
  auto self = shared_from_this();
  tcp().expires_after(std::chrono::milliseconds(timeout_ms));
  resolver_.async_resolve(b_.host, std::to_string(b_.port), [self, done](beast::error_code ec, tcp::resolver::results_type r) {
    if (ec) return done(ec, "resolve");
    self->tcp().async_connect(r, [self, done](beast::error_code ec, const tcp::endpoint&) {
      if (ec) return done(ec, "connect");
      if (!self->tls_) return done(ec, "");
      // SNI and host-name verification against the URL's host.
      if (!SSL_set_tlsext_host_name(self->tls_->native_handle(), self->b_.host.c_str()))
        return done(beast::error_code(static_cast<int>(::ERR_get_error()), net::error::get_ssl_category()), "tls");
      self->tls_->set_verify_callback(ssl::host_name_verification(self->b_.host));
      self->tls_->async_handshake(ssl::stream_base::client, [self, done](beast::error_code ec) { done(ec, ec ? "tls" : ""); });
    });
  });
}

void Upstream::close() {
  beast::error_code ec;
  resolver_.cancel();
  tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
  tcp().close();
}

}  // namespace infergrid::serve
