#include "serve/gateway.hpp"

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control/site_router.hpp"
#include "core/error.hpp"
#include "model/catalog.hpp"
#include "net/latency.hpp"
#include "serve/http_server.hpp"
#include "serve/openai.hpp"
#include "serve/prometheus.hpp"
#include "world/world.hpp"
#include "world/yaml_fields.hpp"

namespace infergrid::serve {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using world::Fields;

// ---- config -------------------------------------------------------------------------------------

GatewayConfig load_gateway_config(const std::string& path) {
  const YAML::Node root = world::load_yaml_file(path);
  GatewayConfig c;
  c.file = path;
  try {
    Fields f(path, root, "gateway");
    const std::string listen = f.str("listen", "127.0.0.1:8080");
    const auto colon = listen.rfind(':');
    std::int64_t port = -1;
    if (colon == std::string::npos || !core::parse_int(listen.substr(colon + 1), port) || port < 0 || port > 65535)
      core::fail_input(path, Fields::line(f.node("listen")), "listen", "expected HOST:PORT");
    c.listen_host = listen.substr(0, colon);
    c.listen_port = static_cast<unsigned short>(port);
    c.policy = f.str("policy", "nearest");
    const auto names = control::site_router_names();
    if (std::find(names.begin(), names.end(), c.policy) == names.end())
      core::fail_input(path, Fields::line(f.node("policy")), "policy", fmt::format("unknown policy '{}'", c.policy));
    auto latlon = [&](const YAML::Node& n, const std::string& key) {
      core::LatLon p;
      if (!n.IsSequence() || n.size() != 2) core::fail_input(path, Fields::line(n), key, "expected [LAT, LON]");
      try {
        p.lat = n[0].as<double>();
        p.lon = n[1].as<double>();
      } catch (const YAML::Exception&) {
        core::fail_input(path, Fields::line(n), key, "expected [LAT, LON]");
      }
      if (std::fabs(p.lat) > 90 || std::fabs(p.lon) > 180) core::fail_input(path, Fields::line(n), key, "out of range");
      return p;
    };
    if (f.has("location")) {
      c.location = latlon(f.node("location"), "location");
      c.has_location = true;
    }
    c.threads = f.integer("threads", 2, false, 1);
    c.processes = f.integer("processes", 1, false, 1);
    c.scrape_interval_ms = f.integer("scrape_interval_ms", 100, false, 10);
    c.connect_timeout_ms = f.integer("connect_timeout_ms", 1000, false, 1);
    c.first_byte_timeout_ms = f.integer("first_byte_timeout_ms", 60000, false, 1);
    c.idle_timeout_ms = f.integer("idle_timeout_ms", 30000, false, 1);
    c.retries = f.integer("retries", 2, false, 0);
    c.batch_shed_at = f.num("batch_shed_at", 0.8, false, 0, 100);
    c.interactive_shed_at = f.num("interactive_shed_at", 1.0, false, 0, 100);
    c.breaker_failures = f.integer("breaker_failures", 3, false, 1);
    c.breaker_open_ms = f.integer("breaker_open_ms", 2000, false, 1);
    c.access_log = f.str("access_log", "");
    // A non-empty list under `key` of the map `owner`; the error names the list or its owner.
    auto non_empty_list = [&](Fields& fields, const YAML::Node& owner, const std::string& key, const std::string& what) {
      const YAML::Node n = fields.node(key);
      if (!n || !n.IsSequence() || n.size() == 0) core::fail_input(path, Fields::line(n ? n : owner), key, what);
      return n;
    };
    const YAML::Node sites = non_empty_list(f, root, "sites", "expected a non-empty list");
    for (const auto& sn : sites) {
      Fields g(path, sn, "sites");
      SiteConfig s;
      s.name = g.str("name", "", true);
      for (const auto& o : c.sites)
        if (o.name == s.name) core::fail_input(path, Fields::line(sn), "name", fmt::format("duplicate site '{}'", s.name));
      if (!g.has("location")) core::fail_input(path, Fields::line(sn), "location", "missing");
      s.location = latlon(g.node("location"), "location");
      const YAML::Node bs = non_empty_list(g, sn, "backends", "expected a non-empty list");
      for (const auto& bn : bs) {
        Fields h(path, bn, "backends");
        BackendConfig b;
        b.url = h.str("url", "", true);
        const std::string prefix = "http://";
        std::string rest = b.url.rfind(prefix, 0) == 0 ? b.url.substr(prefix.size()) : "";
        if (!rest.empty() && rest.back() == '/') rest.pop_back();
        const auto pc = rest.rfind(':');
        std::int64_t bp = -1;
        if (rest.empty() || pc == std::string::npos || !core::parse_int(rest.substr(pc + 1), bp) || bp < 1 || bp > 65535 ||
            rest.find('/') != std::string::npos)
          core::fail_input(path, Fields::line(h.node("url")), "url", fmt::format("expected http://HOST:PORT, got '{}'", b.url));
        b.host = rest.substr(0, pc);
        b.port = static_cast<unsigned short>(bp);
        const YAML::Node ms = non_empty_list(h, bn, "models", "expected a non-empty list of model names");
        for (const auto& m : ms) {
          if (!m.IsScalar()) core::fail_input(path, Fields::line(m), "models", "expected a model name");
          b.models.push_back(m.Scalar());
        }
        b.max_concurrency = h.integer("max_concurrency", 256, false, 1);
        s.backends.push_back(std::move(b));
      }
      c.sites.push_back(std::move(s));
    }
  } catch (const YAML::Exception& e) {
    core::fail_input(path, e.mark.line + 1, "", e.msg);
  }
  if (!c.has_location) c.location = c.sites.front().location;
  return c;
}

// ---- runtime ------------------------------------------------------------------------------------

namespace {

constexpr int kOutcomes = 5;
const char* kOutcomeNames[kOutcomes] = {"ok", "shed", "error", "failed_midstream", "client_gone"};
const char* kClassNames[3] = {"critical", "interactive", "batch"};

struct Observed {  // one backend, as last scraped
  double running = 0, waiting = 0, kv = 0, rtt_ms = 0;
  bool up = false;
};
struct Snapshot {
  std::vector<Observed> backends;
};

struct BackendLive {
  std::atomic<int> inflight{0};
  std::atomic<int> failures{0};
  std::atomic<std::int64_t> open_until{0};  // ns since epoch of the steady clock
};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

class Gateway : public std::enable_shared_from_this<Gateway> {
 public:
  Gateway(net::io_context& ioc, GatewayConfig cfg) : ioc_(ioc), cfg_(std::move(cfg)) {
    for (std::size_t s = 0; s < cfg_.sites.size(); ++s)
      for (std::size_t b = 0; b < cfg_.sites[s].backends.size(); ++b) {
        flat_.push_back({static_cast<int>(s), static_cast<int>(b)});
        for (const auto& m : cfg_.sites[s].backends[b].models) models_.push_back(m);
      }
    std::sort(models_.begin(), models_.end());
    models_.erase(std::unique(models_.begin(), models_.end()), models_.end());
    live_ = std::vector<BackendLive>(flat_.size());
    observed_.resize(flat_.size());
    std::atomic_store(&snap_, std::make_shared<const Snapshot>(Snapshot{observed_}));
    ttft_.reserve(3);
    for (int i = 0; i < 3; ++i) ttft_.emplace_back(std::vector<double>{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
    counts_ = std::vector<std::atomic<std::uint64_t>>(cfg_.sites.size() * 3 * kOutcomes + 3 * kOutcomes);
    try {  // loaded here, not on the request path
      metros_ = world::load_world(world::default_world_path(), model::Catalog::builtin()).metros;
    } catch (const core::InputError&) {
    }
    if (!cfg_.access_log.empty()) {
      log_ = cfg_.access_log == "-" ? stderr : std::fopen(cfg_.access_log.c_str(), "ab");
      if (!log_) core::fail_input(cfg_.access_log, 0, "access_log", "cannot open for appending");
    }
  }

  void start_scrapers() {
    for (std::size_t i = 0; i < flat_.size(); ++i) scrape(i);
  }

  void handle(Request&& req, std::shared_ptr<Reply> reply);

  // Everything a proxied request needs.
  struct Call;

 private:
  friend struct Call;
  const BackendConfig& backend(std::size_t i) const {
    return cfg_.sites[static_cast<std::size_t>(flat_[i].first)].backends[static_cast<std::size_t>(flat_[i].second)];
  }
  bool circuit_open(std::size_t i) const { return live_[i].open_until.load() > now_ns(); }
  void record_failure(std::size_t i) {
    if (live_[i].failures.fetch_add(1) + 1 >= cfg_.breaker_failures)
      live_[i].open_until.store(now_ns() + static_cast<std::int64_t>(cfg_.breaker_open_ms) * 1'000'000);
  }
  void record_success(std::size_t i) { live_[i].failures.store(0); }
  void count(int site, int cls, int outcome) {
    const std::size_t base = site < 0 ? cfg_.sites.size() * 3 * kOutcomes : static_cast<std::size_t>(site) * 3 * kOutcomes;
    counts_[base + static_cast<std::size_t>(cls) * kOutcomes + static_cast<std::size_t>(outcome)].fetch_add(1);
  }

  void scrape(std::size_t i);
  std::string metrics();
  void log_line(const std::string& line) {
    if (!log_) return;
    std::lock_guard<std::mutex> lock(log_mu_);
    std::fwrite(line.data(), 1, line.size(), log_);
    std::fputc('\n', log_);
    std::fflush(log_);
  }
  bool client_location(const Request& req, core::LatLon& out, std::string& err);

  net::io_context& ioc_;
  GatewayConfig cfg_;
  std::vector<std::pair<int, int>> flat_;  // (site, backend in site)
  std::vector<std::string> models_;  // sorted, unique
  std::vector<BackendLive> live_;
  std::mutex obs_mu_;
  std::vector<Observed> observed_;  // the scrapers' working copy, under obs_mu_
  std::shared_ptr<const Snapshot> snap_;  // read with atomic_load: request threads never wait
  std::vector<std::atomic<std::uint64_t>> counts_;
  std::mutex hist_mu_;
  std::vector<Histogram> ttft_;
  std::FILE* log_ = nullptr;
  std::mutex log_mu_;
  std::atomic<std::uint64_t> next_id_{1};
  std::vector<world::Metro> metros_;  // the embedded world's, for locations given by name
};

// ---- scraping -----------------------------------------------------------------------------------

struct Scrape : std::enable_shared_from_this<Scrape> {
  Scrape(net::io_context& ioc) : stream(net::make_strand(ioc)), resolver(stream.get_executor()) {}
  beast::tcp_stream stream;
  tcp::resolver resolver;
  beast::flat_buffer buf;
  http::request<http::empty_body> req;
  http::response<http::string_body> res;
  Clock::time_point t0;
};

void Gateway::scrape(std::size_t i) {
  auto self = shared_from_this();
  auto sc = std::make_shared<Scrape>(ioc_);
  const auto& b = backend(i);
  sc->t0 = Clock::now();
  const auto deadline = std::chrono::milliseconds(std::max(500, 5 * cfg_.scrape_interval_ms));
  auto finish = [self, sc, i](bool ok) {
    Observed o;
    if (ok) {
      const std::string& t = sc->res.body();
      o.up = sc->res.result() == http::status::ok;
      scrape_value(t, "vllm:num_requests_running", o.running);
      scrape_value(t, "vllm:num_requests_waiting", o.waiting);
      if (!scrape_value(t, "vllm:kv_cache_usage_perc", o.kv)) scrape_value(t, "vllm:gpu_cache_usage_perc", o.kv);
      o.rtt_ms = std::chrono::duration<double, std::milli>(Clock::now() - sc->t0).count();
    }
    {
      std::lock_guard<std::mutex> lock(self->obs_mu_);
      auto& cur = self->observed_[i];
      if (o.up && cur.up && cur.rtt_ms > 0) o.rtt_ms = 0.8 * cur.rtt_ms + 0.2 * o.rtt_ms;  // EWMA
      cur = o;
      std::atomic_store(&self->snap_, std::make_shared<const Snapshot>(Snapshot{self->observed_}));
    }
    if (ok && o.up) self->record_success(i);
    else self->record_failure(i);
    auto t = std::make_shared<net::steady_timer>(self->ioc_, std::chrono::milliseconds(self->cfg_.scrape_interval_ms));
    t->async_wait([self, t, i](const boost::system::error_code&) { self->scrape(i); });
  };
  sc->stream.expires_after(deadline);
  sc->resolver.async_resolve(b.host, std::to_string(b.port), [sc, finish, &b](beast::error_code ec, tcp::resolver::results_type r) {
    if (ec) return finish(false);
    sc->stream.async_connect(r, [sc, finish, &b](beast::error_code ec, const tcp::endpoint&) {
      if (ec) return finish(false);
      sc->req = {http::verb::get, "/metrics", 11};
      sc->req.set(http::field::host, b.host);
      sc->req.keep_alive(false);
      http::async_write(sc->stream, sc->req, [sc, finish](beast::error_code ec, std::size_t) {
        if (ec) return finish(false);
        http::async_read(sc->stream, sc->buf, sc->res, [sc, finish](beast::error_code ec, std::size_t) {
          beast::error_code ignore;
          sc->stream.socket().shutdown(tcp::socket::shutdown_both, ignore);
          finish(!ec);
        });
      });
    });
  });
}

// ---- proxying -----------------------------------------------------------------------------------

struct Candidate {
  int site;
  double rtt_ms;
  control::SiteView view;
};

struct Gateway::Call : std::enable_shared_from_this<Gateway::Call> {
  std::shared_ptr<Gateway> gw;
  std::shared_ptr<Reply> reply;
  std::string id, path, body, model;
  int priority = 1;
  bool stream = false;
  core::LatLon client;
  Clock::time_point t0;
  std::vector<std::size_t> tried;
  std::size_t backend = 0;
  int site = -1, attempts = 0;
  nlohmann::json candidates = nlohmann::json::array();
  std::string why;
  const char* score_name = "";
  // Upstream.
  std::optional<beast::tcp_stream> up;
  std::optional<tcp::resolver> resolver;
  beast::flat_buffer buf;
  http::request<http::string_body> ureq;
  std::optional<http::response_parser<http::buffer_body>> parser;
  std::array<char, 16384> chunk{};
  bool started = false;  // bytes have reached the client
  bool counted_inflight = false;
  std::string whole;     // a non-streamed body
  std::int64_t events = 0;
  double ttft_ms = -1;
  int status = 0;

  void go() {
    if (!pick()) return;
    connect();
  }

  // Serves the model, its circuit is closed, and this call has not tried it yet.
  bool usable(std::size_t i) const {
    const auto& ms = gw->backend(i).models;
    return std::find(ms.begin(), ms.end(), model) != ms.end() && !gw->circuit_open(i) &&
           std::find(tried.begin(), tried.end(), i) == tried.end();
  }

  // Picks a site by the policy, then the least-loaded backend in it; false when none is left.
  bool pick() {
    const auto snap = std::atomic_load(&gw->snap_);
    const auto& cfg = gw->cfg_;
    const infergrid::net::RttModel rtt = infergrid::net::RttModel::calibrated();
    std::vector<control::SiteView> views;
    std::vector<int> view_site;
    candidates = nlohmann::json::array();
    double cap = 0, load = 0;
    for (std::size_t s = 0; s < cfg.sites.size(); ++s) {
      control::SiteView v;
      v.site = static_cast<int>(s);
      double best_rtt = 1e300, kv = 0;
      for (std::size_t i = 0; i < gw->flat_.size(); ++i) {
        if (gw->flat_[i].first != static_cast<int>(s) || !usable(i)) continue;
        const auto& b = gw->backend(i);
        const auto& o = snap->backends[i];
        const int own = gw->live_[i].inflight.load();
        cap += static_cast<double>(b.max_concurrency) / cfg.processes;
        load += own;
        ++v.replicas;
        v.outstanding += std::max(own, static_cast<int>(o.running + o.waiting));
        v.waiting += static_cast<int>(o.waiting);
        kv += o.kv;
        best_rtt = std::min(best_rtt, o.rtt_ms);
      }
      if (v.replicas == 0) continue;
      v.kv_usage = kv / v.replicas;
      v.rtt_ms = rtt.rtt_ms(client, cfg.sites[s].location) + (best_rtt < 1e299 ? best_rtt : 0);
      views.push_back(v);
      view_site.push_back(static_cast<int>(s));
      candidates.push_back({{"site", cfg.sites[s].name}, {"rtt_ms", std::round(v.rtt_ms * 100) / 100},
                            {"outstanding", v.outstanding}, {"waiting", v.waiting}, {"kv", v.kv_usage},
                            {"backends", v.replicas}});
    }
    if (views.empty()) {
      fail(503, "service_unavailable", fmt::format("no healthy backend serves '{}'", model), "no_backend");
      return false;
    }
    // Admission, once, at the first attempt: batch goes first, critical never.
    if (attempts == 0) {
      const double frac = cap > 0 ? load / cap : 1;
      if ((priority == 2 && frac >= cfg.batch_shed_at) || (priority == 1 && frac >= cfg.interactive_shed_at)) {
        why = fmt::format("shed: load {:.2f} of capacity", frac);
        gw->count(-1, priority, 1);
        reply->send(429, "application/json",
                    error_body({429, "rate_limit_exceeded",
                                fmt::format("overloaded: {} requests are shed at {:.0f}% of capacity",
                                            kClassNames[priority], 100 * (priority == 2 ? cfg.batch_shed_at : cfg.interactive_shed_at)),
                                "", "rate_limit_exceeded"}),
                    {{"Retry-After", "1"}});
        log(429, "shed");
        return false;
      }
    }
    thread_local std::map<std::string, std::unique_ptr<control::SiteRouter>> routers;
    auto& router = routers[cfg.policy];
    if (!router) router = control::make_site_router(cfg.policy, 1);
    const control::GeoRequest gr{0, 0, priority, 0};
    const auto k = router->pick(gr, views).value_or(0);
    const auto sc = router->scores(views);
    for (std::size_t i = 0; i < sc.size() && i < candidates.size(); ++i) candidates[i]["score"] = std::round(sc[i] * 1000) / 1000;
    score_name = router->score_name();
    site = view_site[k];
    why = fmt::format("{}: rtt {:.1f} ms, {} outstanding on {} backends, kv {:.2f}", cfg.policy, views[k].rtt_ms,
                      views[k].outstanding, views[k].replicas, views[k].kv_usage);
    // The backend in the site with the least (own in-flight + scraped waiting).
    double best = 1e300;
    for (std::size_t i = 0; i < gw->flat_.size(); ++i) {
      if (gw->flat_[i].first != site || !usable(i)) continue;
      const double l = gw->live_[i].inflight.load() + snap->backends[i].waiting;
      if (l < best) best = l, backend = i;
    }
    tried.push_back(backend);
    ++attempts;
    gw->live_[backend].inflight.fetch_add(1);
    counted_inflight = true;
    return true;
  }

  void release() {
    if (counted_inflight) gw->live_[backend].inflight.fetch_sub(1);
    counted_inflight = false;
  }

  void connect() {
    auto self = shared_from_this();
    const auto& b = gw->backend(backend);
    up.emplace(net::make_strand(gw->ioc_));
    resolver.emplace(up->get_executor());
    buf.clear();
    up->expires_after(std::chrono::milliseconds(gw->cfg_.connect_timeout_ms));
    resolver->async_resolve(b.host, std::to_string(b.port), [self](beast::error_code ec, tcp::resolver::results_type r) {
      if (ec) return self->upstream_failed("resolve: " + ec.message());
      self->up->async_connect(r, [self](beast::error_code ec, const tcp::endpoint&) {
        if (ec) return self->upstream_failed("connect: " + ec.message());
        self->send_upstream();
      });
    });
  }

  void send_upstream() {
    auto self = shared_from_this();
    const auto& b = gw->backend(backend);
    ureq = {http::verb::post, path, 11};
    ureq.set(http::field::host, fmt::format("{}:{}", b.host, b.port));
    ureq.set(http::field::content_type, "application/json");
    ureq.set("x-infergrid-priority", kClassNames[priority]);
    ureq.set("x-request-id", id);
    ureq.keep_alive(false);
    ureq.body() = body;
    ureq.prepare_payload();
    up->expires_after(std::chrono::milliseconds(gw->cfg_.first_byte_timeout_ms));
    http::async_write(*up, ureq, [self](beast::error_code ec, std::size_t) {
      if (ec) return self->upstream_failed("write: " + ec.message());
      self->parser.emplace();
      self->parser->body_limit(64ull << 20);
      http::async_read_header(*self->up, self->buf, *self->parser, [self](beast::error_code ec, std::size_t) {
        if (ec) return self->upstream_failed("header: " + ec.message());
        self->on_header();
      });
    });
  }

  void on_header() {
    auto& h = parser->get();
    status = static_cast<int>(h.result_int());
    if (status >= 500) return upstream_failed(fmt::format("status {}", status));
    gw->record_success(backend);
    const std::string type(h[http::field::content_type]);
    if (parser->chunked() && type.find("text/event-stream") != std::string::npos) {
      reply->begin_stream(status, type, {{"x-infergrid-site", gw->cfg_.sites[static_cast<std::size_t>(site)].name}});
      started = true;
    }
    read_body();
  }

  void read_body() {
    auto self = shared_from_this();
    parser->get().body().data = chunk.data();
    parser->get().body().size = chunk.size();
    up->expires_after(std::chrono::milliseconds(started ? gw->cfg_.idle_timeout_ms : gw->cfg_.first_byte_timeout_ms));
    http::async_read(*up, buf, *parser, [self](beast::error_code ec, std::size_t) {
      const std::size_t n = self->chunk.size() - self->parser->get().body().size;
      if (ec == http::error::need_buffer) ec = {};
      if (n > 0) self->relay(std::string(self->chunk.data(), n));
      if (ec) {
        if (self->started) return self->midstream_failed(ec.message());
        return self->upstream_failed("body: " + ec.message());
      }
      if (self->reply->gone()) return self->client_gone();
      if (self->parser->is_done()) return self->done();
      self->read_body();
    });
  }

  void relay(std::string data) {
    if (ttft_ms < 0) {
      ttft_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      std::lock_guard<std::mutex> lock(gw->hist_mu_);
      gw->ttft_[static_cast<std::size_t>(priority)].observe(ttft_ms / 1000);
    }
    for (std::size_t p = 0; (p = data.find("data: ", p)) != std::string::npos; p += 6) ++events;
    if (started) reply->write(std::move(data));
    else whole += data;
  }

  void done() {
    close_upstream();
    release();
    if (!started) {
      const std::string type(parser->get()[http::field::content_type]);
      reply->send(status, type.empty() ? "application/json" : type, std::move(whole),
                  {{"x-infergrid-site", gw->cfg_.sites[static_cast<std::size_t>(site)].name}});
    } else {
      reply->end();
    }
    gw->count(site, priority, status < 400 ? 0 : 2);
    log(status, status < 400 ? "ok" : "upstream_error");
  }

  void upstream_failed(const std::string& what) {
    close_upstream();
    release();
    gw->record_failure(backend);
    if (reply->gone()) return client_gone();
    if (attempts <= gw->cfg_.retries) {
      why += "; retry after " + what;
      if (pick()) connect();
      return;
    }
    fail(502, "bad_gateway", fmt::format("upstream failed after {} attempts: {}", attempts, what), "upstream_error");
  }

  void midstream_failed(const std::string& what) {
    close_upstream();
    release();
    gw->record_failure(backend);
    reply->write(sse_error({502, "bad_gateway", "the backend failed mid-stream: " + what, "", "upstream_error"}));
    reply->write(std::string(kSseDone));
    reply->end();
    gw->count(site, priority, 3);
    log(502, "failed_midstream: " + what);
  }

  void client_gone() {
    close_upstream();
    release();
    gw->count(site, priority, 4);
    log(499, "client_gone");
  }

  void fail(int st, const std::string& type, const std::string& msg, const std::string& code) {
    release();
    send_error(*reply, st, type, msg, "", code);
    gw->count(site, priority, 2);
    log(st, "error: " + msg);
  }

  void close_upstream() {
    if (!up) return;
    beast::error_code ec;
    up->socket().shutdown(tcp::socket::shutdown_both, ec);
    up->close();
  }

  void log(int st, const std::string& outcome) {
    if (!gw->log_) return;
    nlohmann::json j;
    j["id"] = id;
    j["model"] = model;
    j["priority"] = kClassNames[priority];
    j["client"] = {client.lat, client.lon};
    j["policy"] = gw->cfg_.policy;
    j["candidates"] = candidates;
    j["score"] = score_name;
    j["site"] = site >= 0 ? nlohmann::json(gw->cfg_.sites[static_cast<std::size_t>(site)].name) : nlohmann::json(nullptr);
    j["backend"] = site >= 0 ? nlohmann::json(gw->backend(backend).url) : nlohmann::json(nullptr);
    j["why"] = why;
    j["attempts"] = attempts;
    j["ttft_ms"] = ttft_ms;
    j["events"] = events;
    j["status"] = st;
    j["outcome"] = outcome;
    j["ms"] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    gw->log_line(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
};

bool Gateway::client_location(const Request& req, core::LatLon& out, std::string& err) {
  const auto h = req.find("x-infergrid-client-location");
  if (h == req.end()) {
    out = cfg_.location;
    return true;
  }
  const std::string v(h->value());
  if (core::parse_latlon(v, out)) return true;
  for (const auto& m : metros_)
    if (m.name == v) {
      out = m.pos;
      return true;
    }
  err = fmt::format("x-infergrid-client-location: expected LAT,LON or a metro name, got '{}'", v);
  return false;
}

void Gateway::handle(Request&& req, std::shared_ptr<Reply> reply) {
  ApiRequest ar;
  if (!openai_front(req, *reply, 200, [this] { return metrics(); }, models_, ar)) return;
  const std::string target(req.target());
  const auto path = target.substr(0, target.find('?'));
  auto call = std::make_shared<Call>();
  call->gw = shared_from_this();
  call->reply = std::move(reply);
  call->t0 = Clock::now();
  call->id = fmt::format("ig-{}", next_id_.fetch_add(1));
  call->path = path;
  call->body = std::move(req.body());
  call->model = ar.model;
  call->priority = ar.priority;
  call->stream = ar.stream;
  std::string err;
  if (!client_location(req, call->client, err))
    return send_error(*call->reply, 400, "invalid_request_error", err, "x-infergrid-client-location");
  call->go();
}

std::string Gateway::metrics() {
  std::string out;
  out += "# HELP infergrid_gateway_requests_total Requests by site, class and outcome.\n";
  out += "# TYPE infergrid_gateway_requests_total counter\n";
  for (std::size_t s = 0; s <= cfg_.sites.size(); ++s)
    for (int c = 0; c < 3; ++c)
      for (int o = 0; o < kOutcomes; ++o) {
        const auto v = counts_[s * 3 * kOutcomes + static_cast<std::size_t>(c) * kOutcomes + static_cast<std::size_t>(o)].load();
        if (v == 0) continue;
        out += fmt::format("infergrid_gateway_requests_total{{site=\"{}\",class=\"{}\",outcome=\"{}\"}} {}\n",
                           s < cfg_.sites.size() ? cfg_.sites[s].name : "none", kClassNames[c], kOutcomeNames[o], v);
      }
  const auto snap = std::atomic_load(&snap_);
  out += "# HELP infergrid_gateway_backend_inflight Requests the gateway has in flight to each backend.\n";
  out += "# TYPE infergrid_gateway_backend_inflight gauge\n";
  for (std::size_t i = 0; i < flat_.size(); ++i)
    out += fmt::format("infergrid_gateway_backend_inflight{{site=\"{}\",backend=\"{}\"}} {}\n",
                       cfg_.sites[static_cast<std::size_t>(flat_[i].first)].name, backend(i).url, live_[i].inflight.load());
  out += "# HELP infergrid_gateway_backend_up Whether the last scrape succeeded and the circuit is closed.\n";
  out += "# TYPE infergrid_gateway_backend_up gauge\n";
  for (std::size_t i = 0; i < flat_.size(); ++i)
    out += fmt::format("infergrid_gateway_backend_up{{site=\"{}\",backend=\"{}\"}} {}\n",
                       cfg_.sites[static_cast<std::size_t>(flat_[i].first)].name, backend(i).url,
                       snap->backends[i].up && !circuit_open(i) ? 1 : 0);
  std::lock_guard<std::mutex> lock(hist_mu_);
  for (int c = 0; c < 3; ++c)
    ttft_[static_cast<std::size_t>(c)].write(out, "infergrid_gateway_ttft_seconds",
                                             "Time to the first byte of the answer, by class.",
                                             fmt::format("class=\"{}\"", kClassNames[c]), c == 0);
  return out;
}

}  // namespace

int run_gateway(const GatewayConfig& cfg) {
  net::io_context ioc(cfg.threads);
  std::shared_ptr<Gateway> gw;
  HttpServer server(ioc, cfg.listen_host, cfg.listen_port,
                    [&gw](Request&& r, std::shared_ptr<Reply> rep) { gw->handle(std::move(r), std::move(rep)); });
  std::printf("listening on %s:%u\n", cfg.listen_host.c_str(), server.port());
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> children;
  for (int i = 1; i < cfg.processes; ++i) {
    ioc.notify_fork(net::execution_context::fork_prepare);
    const pid_t pid = fork();
    if (pid == 0) {
      ioc.notify_fork(net::execution_context::fork_child);
      prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the first process
      children.clear();
      break;
    }
    ioc.notify_fork(net::execution_context::fork_parent);
    if (pid > 0) children.push_back(pid);
  }
  gw = std::make_shared<Gateway>(ioc, cfg);
  server.start();
  gw->start_scrapers();
  net::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    for (pid_t c : children) kill(c, SIGTERM);
    ioc.stop();
  });
  std::vector<std::thread> pool;
  for (int i = 1; i < cfg.threads; ++i) pool.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  for (pid_t c : children) waitpid(c, nullptr, 0);
  return 0;
}

}  // namespace infergrid::serve
