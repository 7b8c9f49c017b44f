#pragma once
// The gateway's shared state (internal to src/serve): backends as last scraped, what the gateway
// sees of them itself (in-flight, failures, ejections), tenants and their counters, the access
// log. One Gateway per process; a Call (gateway_call.cpp) proxies one request through it.
#include <array>
#include <atomic>
#include <functional>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "control/site_router.hpp"
#include "serve/access_log.hpp"
#include "serve/gateway_control.hpp"
#include "serve/gateway.hpp"
#include "serve/http_server.hpp"
#include "serve/limits.hpp"
#include "serve/orchestrator.hpp"
#include "serve/prometheus.hpp"
#include "world/world.hpp"

namespace infergrid::serve {

using Clock = std::chrono::steady_clock;
inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

inline constexpr int kOutcomes = 6;
inline constexpr const char* kOutcomeNames[kOutcomes] = {"ok", "shed", "error", "failed_midstream", "client_gone",
                                                         "rate_limited"};
enum Outcome { kOk = 0, kShed = 1, kError = 2, kMidstream = 3, kClientGone = 4, kRateLimited = 5 };
inline constexpr const char* kClassNames[3] = {"critical", "interactive", "batch"};

struct Observed {  // one backend, as last scraped
  double running = 0, waiting = 0, kv = 0, rtt_ms = 0;
  double progress = -1;  // prompt + generation tokens processed, from its counters; -1: unknown
  // The scheduler settings an infergrid engine reports (POST /admin/schedule sets them); -1: the
  // backend does not report them (vLLM, SGLang), so a controller's schedule cannot reach it.
  double step_target_s = -1, prefill_reserve = -1, priority = -1;
  bool up = false;
  std::string error;     // why the last scrape failed
};
struct Snapshot {
  std::vector<Observed> backends;
};

struct BackendLive {
  std::atomic<int> inflight{0};
  std::atomic<int> failures{0};         // consecutive failed requests
  std::atomic<int> scrape_failures{0};  // consecutive failed scrapes
  std::atomic<int> ejections{0};        // ejections in a row (the next lasts this many times longer)
  std::atomic<std::int64_t> ejected_until{0};  // ns on the steady clock
  std::atomic<std::uint64_t> ejected_failures{0}, ejected_stalls{0};
};

struct TenantLive {
  std::atomic<std::uint64_t> requests{0}, rate_limited{0}, downgraded{0}, tokens{0};
};

// What a Call is given by the request handler.
struct CallSpec {
  std::string id, path, body, model;
  int priority = 1;          // granted class
  int claimed = 1;           // class the request asked for
  bool stream = false;
  core::LatLon client;
  int tenant = -1;           // index into cfg.tenants; -1: open gateway
  std::int32_t prompt_tokens = 0;
  std::uint64_t session = 0;  // from x-infergrid-session or the body's `user` (0: none)
  std::int64_t reserved_output = 0;  // output tokens reserved against tokens_per_minute
  RateDecision rate;         // the admission's decision (window, shared)
  Headers headers;           // x-ratelimit-* for the answer
};

class Gateway : public std::enable_shared_from_this<Gateway> {
 public:
  Gateway(boost::asio::io_context& ioc, GatewayConfig cfg, const ServerStats* server);
  void start_scrapers();
  void handle(Request&& req, std::shared_ptr<Reply> reply);

  // ---- for calls ----
  const GatewayConfig& cfg() const { return cfg_; }
  boost::asio::io_context& ioc() { return ioc_; }
  std::size_t backends() const { return flat_.size(); }
  int site_of(std::size_t i) const { return flat_[i].first; }
  const BackendConfig& backend(std::size_t i) const {
    return cfg_.sites[static_cast<std::size_t>(flat_[i].first)].backends[static_cast<std::size_t>(flat_[i].second)];
  }
  boost::asio::ssl::context* tls(std::size_t i) const { return tls_[i].get(); }
  BackendLive& live(std::size_t i) { return live_[i]; }
  std::shared_ptr<const Snapshot> snapshot() const { return std::atomic_load(&snap_); }
  bool ejected(std::size_t i) const { return live_[i].ejected_until.load() > now_ns(); }
  bool scrape_down(std::size_t i) const { return live_[i].scrape_failures.load() >= cfg_.breaker_failures; }
  bool serves(std::size_t i, const std::string& model) const;
  // Takes requests now: running (a fixed backend, or a pool replica that is ready), answering its
  // scrapes, not ejected.
  bool available(std::size_t i) const { return orch_->routable(i) && !ejected(i) && !scrape_down(i); }
  Orchestrator& orchestrator() { return *orch_; }
  // Why no backend for `model` is usable ("" if one is): " (URL: cause; ...)".
  std::string why_unusable(const std::string& model) const;
  // A request to backend i failed (refused, reset, timed out, 5xx, invalid answer).
  void record_failure(std::size_t i);
  void record_success(std::size_t i);
  // Ejects backend i (reason "failures" or "stalled") unless that would eject more than
  // max_ejection_percent of the backends serving `model`; true if it did.
  bool try_eject(std::size_t i, const std::string& model, const char* reason);
  void count(int site, int cls, int outcome);
  void observe_ttft(int cls, double seconds);
  // The router, shared by the process's threads (its state advances under a lock).
  // Nothing: the policy rejected the request (the twin rejects it too).
  std::optional<std::size_t> route(const control::GeoRequest& r, const std::vector<control::SiteView>& views,
                                   std::vector<double>& scores, std::string& score_name);
  // Sessions: where a session's last request ran and its prompt length, so that the router sees
  // the prefix a site is believed to hold (the twin keeps the same record per conversation).
  double prefix_hit(std::uint64_t session, int site, std::int32_t prompt_tokens);
  void session_ran(std::uint64_t session, int site, std::int32_t prompt_tokens);
  std::uint64_t next_request_number() { return request_number_.fetch_add(1) + 1; }
  // Virtual token counters (VTC) per class and tenant.
  void vtc_begin(int cls, int tenant);
  void vtc_end(int cls, int tenant);
  void vtc_charge(int cls, int tenant, double tokens);
  // The admission queue: a request over its class's threshold waits (at most queue_timeout_ms)
  // and is let in, when load falls below the threshold, in VTC order: the waiting request whose
  // tenant has been served the fewest tokens of its class first (ties: first come). `go` runs
  // once, from the thread that freed the slot; its prompt is charged to the tenant's counter
  // there. False: the queue is full (the caller sheds).
  bool enqueue(const std::string& model, int cls, int tenant, std::int32_t prompt, std::uint64_t& ticket,
               std::function<void()> go);
  bool cancel_wait(const std::string& model, int cls, std::uint64_t ticket);  // false: already let in
  void dispatch(const std::string& model);
  void dispatched(const std::string& model);  // a let-in request now counts as in flight
  int letting_in(const std::string& model);  // let in from the queue, not yet in flight
  // Held by a call from reading the load to counting itself in flight, so that two threads
  // cannot both admit into the last slot.
  std::mutex& pick_mutex() { return pick_mu_; }
  // The control plane hosted by this process (shed levels, routing weights; docs/control.md).
  GatewayControl& control() { return *control_; }
  // Capacity (sum of max_concurrency / processes) and load (in flight) of the model's usable backends.
  void capacity(const std::string& model, double& cap, double& load) const;
  // Token accounting of a finished request against its tenant's tokens_per_minute.
  void settle_tokens(const CallSpec& s, std::int64_t prompt, std::int64_t completion, std::int64_t charged_output);
  void charge_tokens(const CallSpec& s, std::int64_t tokens);
  AccessLog& log() { return log_; }
  // One JSON POST to backend i; `done` gets the HTTP status (0: no answer within the deadline).
  void post_json(std::size_t i, const std::string& target, std::string body, std::function<void(int)> done);
  std::string tenant_name(int t) const { return t < 0 ? std::string() : cfg_.tenants[static_cast<std::size_t>(t)].name; }

 private:
  void scrape(std::size_t i);
  std::string metrics();
  bool client_location(const Request& req, core::LatLon& out, std::string& err);
  int authenticate(const Request& req);  // tenant index; -1 none configured; -2 refused

  boost::asio::io_context& ioc_;
  GatewayConfig cfg_;
  const ServerStats* server_;
  std::vector<std::pair<int, int>> flat_;  // (site, backend in site)
  std::vector<std::string> models_;        // sorted, unique
  std::vector<BackendLive> live_;
  std::vector<std::shared_ptr<boost::asio::ssl::context>> tls_;  // per backend; null for http://
  std::mutex obs_mu_;
  std::vector<Observed> observed_;        // the scrapers' working copy, under obs_mu_
  std::shared_ptr<const Snapshot> snap_;  // read with atomic_load: request threads never wait
  std::vector<std::atomic<std::uint64_t>> counts_;
  std::mutex hist_mu_;
  std::vector<Histogram> ttft_;
  AccessLog log_;
  std::atomic<std::uint64_t> next_id_{1};
  std::vector<world::Metro> metros_;  // the embedded world's, for locations given by name
  std::unique_ptr<Orchestrator> orch_;
  std::unique_ptr<GatewayControl> control_;
  std::mutex router_mu_;
  std::mutex session_mu_;
  std::unordered_map<std::uint64_t, std::pair<int, std::int32_t>> sessions_;  // session -> (site, prompt)
  std::atomic<std::uint64_t> request_number_{0};
  std::unique_ptr<control::SiteRouter> router_;
  std::unordered_map<std::string, int> key_to_tenant_;  // SHA-256 hex -> tenant
  std::vector<TenantLive> tenant_live_;
  std::atomic<std::uint64_t> unauthorized_{0}, too_large_{0};
  std::unique_ptr<RateLimiter> limiter_;
  struct Vtc {
    double counter = 0;
    int active = 0;
  };
  std::mutex vtc_mu_;
  std::map<std::pair<int, int>, Vtc> vtc_;  // (class, tenant)
  struct Waiter {
    std::uint64_t ticket;
    int tenant;
    std::int32_t prompt;
    std::function<void()> go;
  };
  struct ModelQueue {
    std::array<std::vector<Waiter>, 3> by_class;
    int letting_in = 0;  // let in, not yet in flight
  };
  std::mutex pick_mu_;
  std::mutex q_mu_;
  std::map<std::string, ModelQueue> queues_;
  std::uint64_t next_ticket_ = 1;
};

// Proxies one admitted request (gateway_call.cpp).
void start_call(const std::shared_ptr<Gateway>& gw, std::shared_ptr<Reply> reply, CallSpec spec);

}  // namespace infergrid::serve
