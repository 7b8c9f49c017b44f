// The gateway's own calls to its backends: /metrics scraped into snapshots, and one-shot JSON posts
// (a controller's schedule carried to an engine).
#include <fmt/format.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>

#include "serve/gateway_state.hpp"
#include "serve/prometheus.hpp"
#include "serve/upstream.hpp"

namespace infergrid::serve {

namespace net = boost::asio;
namespace beast = boost::beast;

// ---- scraping -----------------------------------------------------------------------------------

namespace {
// One request to a backend and its answer, on a connection of its own.
struct Exchange {
  std::shared_ptr<Upstream> up;
  beast::flat_buffer buf;
  beast::http::request<beast::http::string_body> req;
  beast::http::response_parser<beast::http::string_body> res;
  Clock::time_point t0;
};

// Connects to `b`, sends x->req (its method, target and body set by the caller; host, key and
// Connection: close here) and reads the answer, all within deadline_ms; `finish` gets whether an
// answer came and, if not, the failing stage.
void exchange(const std::shared_ptr<Exchange>& x, const BackendConfig& b, int deadline_ms,
              std::function<void(bool, std::string)> finish) {
  x->up->connect(deadline_ms, [x, finish, &b, deadline_ms](beast::error_code ec, const char* stage) {
    if (ec) return finish(false, fmt::format("{}: {}", stage, ec.message()));
    x->req.set(beast::http::field::host, b.host);
    if (!b.api_key.empty()) x->req.set(beast::http::field::authorization, "Bearer " + b.api_key);
    x->req.keep_alive(false);
    x->up->tcp().expires_after(std::chrono::milliseconds(deadline_ms));
    x->up->visit([&](auto& s) {
      beast::http::async_write(s, x->req, [x, finish](beast::error_code ec, std::size_t) {
        if (ec) return finish(false, "write: " + ec.message());
        x->up->visit([&](auto& s2) {
          beast::http::async_read(s2, x->buf, x->res, [finish](beast::error_code ec, std::size_t) {
            finish(!ec, ec ? "read: " + ec.message() : std::string());
          });
        });
      });
    });
  });
}
}  // namespace

void Gateway::scrape(std::size_t i) {
  auto self = shared_from_this();
  if (orch_->phase(i) == SlotPhase::kOff) {  // a pool slot with no replica: nothing to ask
    {
      std::lock_guard<std::mutex> lock(obs_mu_);
      if (observed_[i].up || observed_[i].error.empty()) {
        observed_[i] = Observed{};
        observed_[i].error = "pool replica not running";
        std::atomic_store(&snap_, std::make_shared<const Snapshot>(Snapshot{observed_}));
      }
    }
    auto t = std::make_shared<net::steady_timer>(ioc_, std::chrono::milliseconds(cfg_.scrape_interval_ms));
    t->async_wait([self, t, i](const boost::system::error_code&) { self->scrape(i); });
    return;
  }
  auto sc = std::make_shared<Exchange>();
  const auto& b = backend(i);
  sc->up = std::make_shared<Upstream>(net::make_strand(ioc_), b, tls_[i].get());
  sc->t0 = Clock::now();
  sc->res.body_limit(4 << 20);
  const int deadline = std::max(500, 5 * cfg_.scrape_interval_ms);
  auto finish = [self, sc, i](bool ok, std::string error) {
    Observed o;
    o.error = std::move(error);
    if (ok && sc->res.get().result() != beast::http::status::ok) o.error = fmt::format("/metrics answered {}", sc->res.get().result_int());
    if (ok) {
      const std::string& t = sc->res.get().body();
      o.up = sc->res.get().result() == beast::http::status::ok;
      scrape_value(t, "vllm:num_requests_running", o.running) || scrape_value(t, "sglang:num_running_reqs", o.running);
      scrape_value(t, "vllm:num_requests_waiting", o.waiting) || scrape_value(t, "sglang:num_queue_reqs", o.waiting);
      if (!scrape_value(t, "vllm:kv_cache_usage_perc", o.kv)) scrape_value(t, "vllm:gpu_cache_usage_perc", o.kv);
      double p = 0, g = 0;
      if ((scrape_value(t, "vllm:prompt_tokens_total", p) && scrape_value(t, "vllm:generation_tokens_total", g)) ||
          (scrape_value(t, "sglang:prompt_tokens_total", p) && scrape_value(t, "sglang:generation_tokens_total", g)))
        o.progress = p + g;
      if (double steps = 0; scrape_value(t, "vllm:iteration_tokens_total_count", steps))  // moves during a long prefill too
        o.progress = std::max(0.0, o.progress) + steps;
      if (double step = 0, reserve = 0, prio = 0; scrape_value(t, "infergrid_engine_step_target_seconds", step) &&
                                                  scrape_value(t, "infergrid_engine_step_prefill_reserve", reserve) &&
                                                  scrape_value(t, "infergrid_engine_priority_scheduling", prio)) {
        o.step_target_s = step;
        o.prefill_reserve = reserve;
        o.priority = prio;
      }
      o.rtt_ms = std::chrono::duration<double, std::milli>(Clock::now() - sc->t0).count();
    }
    {
      std::lock_guard<std::mutex> lock(self->obs_mu_);
      auto& cur = self->observed_[i];
      if (o.up && cur.up && cur.rtt_ms > 0) o.rtt_ms = 0.8 * cur.rtt_ms + 0.2 * o.rtt_ms;  // EWMA
      cur = o;
      std::atomic_store(&self->snap_, std::make_shared<const Snapshot>(Snapshot{self->observed_}));
    }
    if (ok && o.up) {
      self->live_[i].scrape_failures.store(0);
      self->orch_->scraped_ok(i);
    } else {
      self->live_[i].scrape_failures.fetch_add(1);
    }
    for (const auto& m : self->backend(i).models) self->dispatch(m);  // capacity may have come back
    sc->up->close();
    auto t = std::make_shared<net::steady_timer>(self->ioc_, std::chrono::milliseconds(self->cfg_.scrape_interval_ms));
    t->async_wait([self, t, i](const boost::system::error_code&) { self->scrape(i); });
  };
  sc->req = {beast::http::verb::get, "/metrics", 11};
  exchange(sc, b, deadline, finish);
}

// One JSON POST to backend i (a controller's setting carried to an engine); `done` gets the HTTP
// status, or 0 when nothing came back within the deadline.
void Gateway::post_json(std::size_t i, const std::string& target, std::string body, std::function<void(int)> done) {
  auto self = shared_from_this();
  auto p = std::make_shared<Exchange>();
  const auto& b = backend(i);
  p->up = std::make_shared<Upstream>(net::make_strand(ioc_), b, tls_[i].get());
  p->res.body_limit(1 << 16);
  p->req = {beast::http::verb::post, target, 11};
  p->req.set(beast::http::field::content_type, "application/json");
  p->req.body() = std::move(body);
  p->req.prepare_payload();
  exchange(p, b, std::max(1000, 10 * cfg_.scrape_interval_ms), [self, p, done = std::move(done)](bool ok, const std::string&) {
    p->up->close();
    done(ok ? p->res.get().result_int() : 0);
  });
}

}  // namespace infergrid::serve
