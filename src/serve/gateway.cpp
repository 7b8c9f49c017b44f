// The gateway process: backends scraped into snapshots, tenants checked at the door (key,
// entitlement, rate limits), /metrics, and the parent that keeps its worker processes alive.
#include "serve/gateway.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.hpp"
#include "model/catalog.hpp"
#include "serve/gateway_state.hpp"
#include "serve/openai.hpp"
#include "serve/upstream.hpp"

namespace infergrid::serve {

namespace net = boost::asio;
namespace beast = boost::beast;

Gateway::Gateway(net::io_context& ioc, GatewayConfig cfg, const ServerStats* server)
    : ioc_(ioc), cfg_(std::move(cfg)), server_(server), log_(cfg_.access_log, cfg_.access_log_max_bytes, cfg_.access_log_keep) {
  for (std::size_t s = 0; s < cfg_.sites.size(); ++s)
    for (std::size_t b = 0; b < cfg_.sites[s].backends.size(); ++b) {
      flat_.push_back({static_cast<int>(s), static_cast<int>(b)});
      const auto& bc = cfg_.sites[s].backends[b];
      for (const auto& m : bc.models) models_.push_back(m);
      tls_.push_back(bc.tls ? make_client_tls(bc, cfg_.file) : nullptr);
    }
  std::sort(models_.begin(), models_.end());
  models_.erase(std::unique(models_.begin(), models_.end()), models_.end());
  live_ = std::vector<BackendLive>(flat_.size());
  observed_.resize(flat_.size());
  std::atomic_store(&snap_, std::make_shared<const Snapshot>(Snapshot{observed_}));
  for (int i = 0; i < 3; ++i) ttft_.emplace_back(std::vector<double>{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
  counts_ = std::vector<std::atomic<std::uint64_t>>((cfg_.sites.size() + 1) * 3 * kOutcomes);
  try {  // loaded here, not on the request path
    metros_ = world::load_world(world::default_world_path(), model::Catalog::builtin()).metros;
  } catch (const core::InputError&) {
  }
  router_ = control::make_site_router(cfg_.policy, 1);
  orch_ = std::make_unique<Orchestrator>(*this);
  control_ = std::make_unique<GatewayControl>(*this);
  for (std::size_t t = 0; t < cfg_.tenants.size(); ++t)
    for (const auto& d : cfg_.tenants[t].key_sha256) key_to_tenant_[d] = static_cast<int>(t);
  tenant_live_ = std::vector<TenantLive>(cfg_.tenants.size());
  limiter_ = std::make_unique<RateLimiter>(cfg_.rate_window_s, cfg_.redis, "infergrid:rl");
}

void Gateway::start_scrapers() {
  orch_->start();
  for (std::size_t i = 0; i < flat_.size(); ++i) scrape(i);
  control_->start();
}

bool Gateway::serves(std::size_t i, const std::string& model) const {
  const auto& ms = backend(i).models;
  return std::find(ms.begin(), ms.end(), model) != ms.end();
}

std::string Gateway::why_unusable(const std::string& model) const {
  const auto snap = snapshot();
  std::string out;
  for (std::size_t i = 0; i < flat_.size(); ++i) {
    if (!serves(i, model)) continue;
    std::string cause;
    if (const auto ph = orch_->phase(i); ph == SlotPhase::kOff) cause = "pool replica not running";
    else if (ph == SlotPhase::kStarting) cause = "pool replica starting";
    else if (ph == SlotPhase::kDraining) cause = "pool replica draining";
    else if (ejected(i)) cause = "ejected after failed or stalled requests";
    else if (scrape_down(i)) cause = "unreachable: " + (snap->backends[i].error.empty() ? std::string("scrapes fail") : snap->backends[i].error);
    else continue;
    out += (out.empty() ? " (" : "; ") + backend(i).url + ": " + cause;
  }
  return out.empty() ? out : out + ")";
}

void Gateway::record_failure(std::size_t i) {
  // Request outcomes only: a backend that answers scrapes but fails requests is still ejected.
  const int n = live_[i].failures.fetch_add(1) + 1;
  if (n >= cfg_.breaker_failures) {
    for (const auto& m : backend(i).models)
      if (try_eject(i, m, "failures")) break;
  }
}

void Gateway::record_success(std::size_t i) {
  live_[i].failures.store(0);
  if (!ejected(i)) live_[i].ejections.store(0);
}

bool Gateway::try_eject(std::size_t i, const std::string& model, const char* reason) {
  if (ejected(i)) return true;
  int serving = 0, out = 0;
  for (std::size_t j = 0; j < flat_.size(); ++j) {
    if (!serves(j, model)) continue;
    ++serving;
    if (ejected(j)) ++out;
  }
  // Envoy's max_ejection_percent: at least one backend is always ejectable, as in Envoy.
  if (out > 0 && 100.0 * (out + 1) > cfg_.max_ejection_percent * static_cast<double>(serving)) return false;
  const int k = std::min(10, live_[i].ejections.fetch_add(1) + 1);
  live_[i].ejected_until.store(now_ns() + static_cast<std::int64_t>(cfg_.breaker_open_ms) * 1'000'000 * k);
  live_[i].failures.store(0);
  (std::string(reason) == "stalled" ? live_[i].ejected_stalls : live_[i].ejected_failures).fetch_add(1);
  return true;
}

void Gateway::count(int site, int cls, int outcome) {
  const std::size_t base = (site < 0 ? cfg_.sites.size() : static_cast<std::size_t>(site)) * 3 * kOutcomes;
  counts_[base + static_cast<std::size_t>(cls) * kOutcomes + static_cast<std::size_t>(outcome)].fetch_add(1);
}

void Gateway::observe_ttft(int cls, double seconds) {
  std::lock_guard<std::mutex> lock(hist_mu_);
  ttft_[static_cast<std::size_t>(cls)].observe(seconds);
}

std::optional<std::size_t> Gateway::route(const control::GeoRequest& r, const std::vector<control::SiteView>& views,
                                          std::vector<double>& scores, std::string& score_name) {
  std::lock_guard<std::mutex> lock(router_mu_);
  const auto k = router_->pick(r, views);
  scores = router_->scores(views);
  score_name = router_->score_name();
  return k;
}

double Gateway::prefix_hit(std::uint64_t session, int site, std::int32_t prompt_tokens) {
  if (session == 0 || prompt_tokens <= 1) return 0;
  std::lock_guard<std::mutex> lock(session_mu_);
  const auto it = sessions_.find(session);
  if (it == sessions_.end() || it->second.first != site) return 0;
  // The turn before shares its prompt as this one's prefix (up to this prompt less one token).
  return static_cast<double>(std::min(it->second.second, prompt_tokens - 1)) / prompt_tokens;
}

void Gateway::session_ran(std::uint64_t session, int site, std::int32_t prompt_tokens) {
  if (session == 0) return;
  std::lock_guard<std::mutex> lock(session_mu_);
  if (sessions_.size() >= 200000) sessions_.clear();  // bounded: forget old sessions wholesale
  sessions_[session] = {site, prompt_tokens};
}

// ---- fairness: virtual token counters (VTC, Sheng et al., OSDI 2024) -----------------------------

void Gateway::vtc_begin(int cls, int tenant) {
  std::lock_guard<std::mutex> lock(vtc_mu_);
  auto& me = vtc_[{cls, tenant}];
  if (me.active == 0) {  // a returning tenant is lifted to the least counter of the active ones
    double lo = -1;
    for (const auto& [key, v] : vtc_)
      if (key.first == cls && key.second != tenant && v.active > 0) lo = lo < 0 ? v.counter : std::min(lo, v.counter);
    if (lo > me.counter) me.counter = lo;
  }
  ++me.active;
}

void Gateway::vtc_end(int cls, int tenant) {
  std::lock_guard<std::mutex> lock(vtc_mu_);
  auto& me = vtc_[{cls, tenant}];
  if (me.active > 0) --me.active;
}

void Gateway::vtc_charge(int cls, int tenant, double tokens) {
  std::lock_guard<std::mutex> lock(vtc_mu_);
  vtc_[{cls, tenant}].counter += tokens;
}

void Gateway::capacity(const std::string& model, double& cap, double& load) const {
  cap = load = 0;
  for (std::size_t i = 0; i < flat_.size(); ++i) {
    if (!serves(i, model) || !available(i)) continue;
    cap += static_cast<double>(backend(i).max_concurrency) / cfg_.processes;
    load += live_[i].inflight.load();
  }
}

bool Gateway::enqueue(const std::string& model, int cls, int tenant, std::int32_t prompt, std::uint64_t& ticket,
                      std::function<void()> go) {
  std::lock_guard<std::mutex> lock(q_mu_);
  auto& q = queues_[model].by_class[static_cast<std::size_t>(cls)];
  if (static_cast<int>(q.size()) >= cfg_.max_queued) return false;
  ticket = next_ticket_++;
  q.push_back({ticket, tenant, prompt, std::move(go)});
  return true;
}

bool Gateway::cancel_wait(const std::string& model, int cls, std::uint64_t ticket) {
  std::lock_guard<std::mutex> lock(q_mu_);
  auto it = queues_.find(model);
  if (it == queues_.end()) return false;
  auto& q = it->second.by_class[static_cast<std::size_t>(cls)];
  const auto w = std::find_if(q.begin(), q.end(), [&](const Waiter& x) { return x.ticket == ticket; });
  if (w == q.end()) return false;
  q.erase(w);
  return true;
}

int Gateway::letting_in(const std::string& model) {
  std::lock_guard<std::mutex> lock(q_mu_);
  const auto it = queues_.find(model);
  return it == queues_.end() ? 0 : it->second.letting_in;
}

void Gateway::dispatched(const std::string& model) {
  std::lock_guard<std::mutex> lock(q_mu_);
  auto& q = queues_[model];
  if (q.letting_in > 0) --q.letting_in;
}

void Gateway::dispatch(const std::string& model) {
  std::vector<std::function<void()>> go;
  {
    std::lock_guard<std::mutex> lock(q_mu_);
    const auto it = queues_.find(model);
    if (it == queues_.end()) return;
    auto& mq = it->second;
    double cap = 0, load = 0;
    capacity(model, cap, load);
    for (int cls = 1; cls <= 2; ++cls) {  // interactive before batch; critical never waits
      auto& q = mq.by_class[static_cast<std::size_t>(cls)];
      const double at = cls == 2 ? cfg_.batch_shed_at : cfg_.interactive_shed_at;
      while (!q.empty() && cap > 0 && (load + mq.letting_in) / cap < at) {
        std::size_t best = 0;
        {
          std::lock_guard<std::mutex> vlock(vtc_mu_);
          auto counter = [&](int t) {
            const auto v = vtc_.find({cls, t});
            return v == vtc_.end() ? 0.0 : v->second.counter;
          };
          for (std::size_t k = 1; k < q.size(); ++k)
            if (counter(q[k].tenant) < counter(q[best].tenant)) best = k;
          vtc_[{cls, q[best].tenant}].counter += q[best].prompt;  // VTC: input tokens weigh 1, once let in
        }
        go.push_back(std::move(q[best].go));
        q.erase(q.begin() + static_cast<std::ptrdiff_t>(best));
        ++mq.letting_in;
      }
    }
  }
  for (auto& f : go) f();
}

// ---- tokens per minute ------------------------------------------------------------------------

void Gateway::charge_tokens(const CallSpec& s, std::int64_t tokens) {
  if (s.tenant < 0 || tokens == 0) return;
  if (cfg_.tenants[static_cast<std::size_t>(s.tenant)].tokens_per_minute > 0)
    limiter_->adjust_tokens(tenant_name(s.tenant), s.rate.window, tokens, s.rate.shared);
}

void Gateway::settle_tokens(const CallSpec& s, std::int64_t prompt, std::int64_t completion, std::int64_t charged_output) {
  if (s.tenant < 0) return;
  tenant_live_[static_cast<std::size_t>(s.tenant)].tokens.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(0, prompt + completion)));
  // Reserved at admission: prompt + reserved_output; charged since: what streamed beyond that.
  charge_tokens(s, (prompt + completion) - (s.prompt_tokens + s.reserved_output + charged_output));
}

// ---- the door: key, entitlement, limits ---------------------------------------------------------

int Gateway::authenticate(const Request& req) {
  if (cfg_.tenants.empty()) return -1;
  const auto h = req.find(beast::http::field::authorization);
  if (h == req.end()) return -2;
  const std::string v(h->value());
  if (v.size() <= 7 || !beast::iequals(v.substr(0, 7), "Bearer ")) return -2;
  const auto it = key_to_tenant_.find(sha256_hex(v.substr(7)));
  return it == key_to_tenant_.end() ? -2 : it->second;
}

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

namespace {

// OpenAI's reset format: "20ms", "1s", "6m0s".
std::string reset_text(double s) {
  if (s < 1) return fmt::format("{}ms", std::max(1, static_cast<int>(std::ceil(s * 1000))));
  if (s < 60) return fmt::format("{}s", static_cast<int>(std::ceil(s)));
  const int t = static_cast<int>(std::ceil(s));
  return fmt::format("{}m{}s", t / 60, t % 60);
}

Headers rate_headers(const RateDecision& d) {
  Headers h;
  if (d.limit_requests > 0) {
    h.emplace_back("x-ratelimit-limit-requests", std::to_string(d.limit_requests));
    h.emplace_back("x-ratelimit-remaining-requests", std::to_string(d.remaining_requests));
    h.emplace_back("x-ratelimit-reset-requests", reset_text(d.reset_requests_s));
  }
  if (d.limit_tokens > 0) {
    h.emplace_back("x-ratelimit-limit-tokens", std::to_string(d.limit_tokens));
    h.emplace_back("x-ratelimit-remaining-tokens", std::to_string(d.remaining_tokens));
    h.emplace_back("x-ratelimit-reset-tokens", reset_text(d.reset_tokens_s));
  }
  return h;
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

void Gateway::handle(Request&& req, std::shared_ptr<Reply> reply) {
  const std::string target(req.target());
  const auto path = target.substr(0, target.find('?'));
  const auto t0 = Clock::now();
  const std::string id = fmt::format("ig-{}-{}", getpid(), next_id_.fetch_add(1));
  auto refuse_log = [&](int status, const std::string& outcome, int tenant, int claimed, int granted) {
    if (!log_.enabled()) return;
    nlohmann::json j;
    j["id"] = id;
    j["client_addr"] = reply->peer();
    j["path"] = path;
    j["tenant"] = tenant >= 0 ? nlohmann::json(tenant_name(tenant)) : nlohmann::json(nullptr);
    if (claimed >= 0) j["claimed"] = kClassNames[claimed];
    if (granted >= 0) j["priority"] = kClassNames[granted];
    j["status"] = status;
    j["outcome"] = outcome;
    j["ms"] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    log_.write(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  };
  int tenant = -1;
  if (path.rfind("/v1/", 0) == 0) {
    tenant = authenticate(req);
    if (tenant == -2) {
      unauthorized_.fetch_add(1);
      const bool none = req.find(beast::http::field::authorization) == req.end();
      send_error(*reply, 401, "invalid_request_error",
                 none ? "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'."
                      : "Incorrect API key provided.",
                 "", none ? "missing_api_key" : "invalid_api_key");
      refuse_log(401, "unauthorized", -1, -1, -1);
      return;
    }
  }
  ApiRequest ar;
  if (!openai_front(req, *reply, 200, [this] { return metrics(); }, models_, ar)) return;
  CallSpec spec;
  spec.id = id;
  spec.path = path;
  spec.model = ar.model;
  spec.stream = ar.stream;
  spec.tenant = tenant;
  spec.prompt_tokens = ar.prompt_tokens;
  {
    const auto h = req.find("x-infergrid-session");
    const std::string key = h != req.end() ? std::string(h->value()) : ar.user;
    spec.session = key.empty() ? 0 : std::hash<std::string>{}(key) | 1;
  }
  spec.claimed = ar.priority;
  spec.priority = tenant >= 0 ? std::max(ar.priority, cfg_.tenants[static_cast<std::size_t>(tenant)].max_class) : ar.priority;
  std::string err;
  if (!client_location(req, spec.client, err))
    return send_error(*reply, 400, "invalid_request_error", err, "x-infergrid-client-location");
  if (tenant >= 0) {
    const auto& tc = cfg_.tenants[static_cast<std::size_t>(tenant)];
    auto& tl = tenant_live_[static_cast<std::size_t>(tenant)];
    tl.requests.fetch_add(1);
    if (spec.priority != spec.claimed) tl.downgraded.fetch_add(1);
    spec.reserved_output = ar.max_tokens > 0 ? ar.max_tokens : cfg_.default_output_tokens;
    if (tc.requests_per_minute > 0 || tc.tokens_per_minute > 0) {
      const std::int64_t reserve = spec.prompt_tokens + spec.reserved_output;
      if (tc.tokens_per_minute > 0 && reserve > tc.tokens_per_minute) {
        tl.rate_limited.fetch_add(1);
        count(-1, spec.priority, kRateLimited);
        send_error(*reply, 429, "tokens",
                   fmt::format("Request too large for tenant '{}': {} tokens per window of {} s, this request needs {}",
                               tc.name, tc.tokens_per_minute, cfg_.rate_window_s, reserve),
                   "", "rate_limit_exceeded");
        return refuse_log(429, "rate_limited: request larger than the token limit", tenant, spec.claimed, spec.priority);
      }
      spec.rate = limiter_->admit(tc.name, {tc.requests_per_minute, tc.tokens_per_minute}, reserve, unix_ms());
      spec.headers = rate_headers(spec.rate);
      if (!spec.rate.allowed) {
        tl.rate_limited.fetch_add(1);
        count(-1, spec.priority, kRateLimited);
        auto h = spec.headers;
        h.emplace_back("Retry-After", std::to_string(std::max(1, static_cast<int>(std::ceil(spec.rate.retry_after_s)))));
        send_error(*reply, 429, spec.rate.limited_by,
                   fmt::format("Rate limit reached for tenant '{}' on {} per window of {} s. Retry after {:.3f} s.",
                               tc.name, spec.rate.limited_by, cfg_.rate_window_s, spec.rate.retry_after_s),
                   "", "rate_limit_exceeded", std::move(h));
        return refuse_log(429, "rate_limited: " + spec.rate.limited_by, tenant, spec.claimed, spec.priority);
      }
    }
  }
  spec.body = std::move(req.body());
  // vLLM schedules by the body's `priority`: a claim above the entitlement is rewritten there too.
  if (tenant >= 0 && ar.body_priority >= 0 && ar.body_priority < spec.priority) {
    auto j = nlohmann::json::parse(spec.body, nullptr, false);
    if (j.is_object()) {
      j["priority"] = spec.priority;
      spec.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
  }
  start_call(shared_from_this(), std::move(reply), std::move(spec));
}

// ---- metrics ------------------------------------------------------------------------------------


// ---- processes ----------------------------------------------------------------------------------

namespace {

// One worker: the gateway on its threads until SIGTERM/SIGINT.
int serve(net::io_context& ioc, HttpServer& server, const GatewayConfig& cfg) {
  auto gw = std::make_shared<Gateway>(ioc, cfg, &server.stats());
  server.set_handler([gw](Request&& r, std::shared_ptr<Reply> rep) { gw->handle(std::move(r), std::move(rep)); });
  server.start();
  gw->start_scrapers();
  net::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) { ioc.stop(); });
  std::vector<std::thread> pool;
  for (int i = 1; i < cfg.threads; ++i) pool.emplace_back([&] { run_guarded(ioc, "gateway"); });
  run_guarded(ioc, "gateway");
  for (auto& t : pool) t.join();
  gw->orchestrator().stop_all();  // the pools' replicas end with the gateway
  return 0;
}

// The signals the parent waits for (blocked there, unblocked in the workers).
sigset_t supervised_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGCHLD);
  return set;
}

// Forks a worker; in the child returns 0 after making it one, in the parent the child's pid.
pid_t fork_worker(net::io_context& ioc) {
  ioc.notify_fork(net::execution_context::fork_prepare);
  const pid_t pid = fork();
  if (pid == 0) {
    ioc.notify_fork(net::execution_context::fork_child);
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the parent
    const sigset_t all = supervised_signals();
    pthread_sigmask(SIG_UNBLOCK, &all, nullptr);
    return 0;
  }
  ioc.notify_fork(net::execution_context::fork_parent);
  return pid;
}

}  // namespace

int run_gateway(const GatewayConfig& cfg) {
  net::io_context ioc(cfg.threads);
  HttpServer server(ioc, cfg.listen_host, cfg.listen_port, nullptr, cfg.client, cfg.tls);
  std::printf("listening on %s:%u\n", cfg.listen_host.c_str(), server.port());
  if (cfg.tenants.empty())
    std::fprintf(stderr, "infergrid gateway: no tenants configured: the gateway is open, every client is served without a key\n");
  std::fflush(stdout);
  std::fflush(stderr);
  if (cfg.processes <= 1) return serve(ioc, server, cfg);
  // The parent accepts nothing: it forks the workers, restarts any that dies, and stops them all
  // on SIGTERM/SIGINT.
  const sigset_t set = supervised_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::vector<pid_t> workers;
  for (int i = 0; i < cfg.processes; ++i) {
    const pid_t pid = fork_worker(ioc);
    if (pid == 0) return serve(ioc, server, cfg);
    if (pid > 0) workers.push_back(pid);
  }
  auto last_restart = Clock::now() - std::chrono::seconds(10);
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGINT || sig == SIGTERM) break;
    int status = 0;
    pid_t dead;
    while ((dead = waitpid(-1, &status, WNOHANG)) > 0) {
      auto it = std::find(workers.begin(), workers.end(), dead);
      if (it == workers.end()) continue;
      std::fprintf(stderr, "infergrid gateway: worker %d %s %d; starting another\n", static_cast<int>(dead),
                   WIFSIGNALED(status) ? "died of signal" : "exited with", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
      std::fflush(stderr);
      if (Clock::now() - last_restart < std::chrono::milliseconds(100)) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      last_restart = Clock::now();
      const pid_t pid = fork_worker(ioc);
      if (pid == 0) return serve(ioc, server, cfg);
      *it = pid > 0 ? pid : -1;
    }
  }
  for (pid_t w : workers)
    if (w > 0) kill(w, SIGTERM);
  for (pid_t w : workers)
    if (w > 0) waitpid(w, nullptr, 0);
  return 0;
}

}  // namespace infergrid::serve
