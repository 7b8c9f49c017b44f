#include "serve/gateway_control.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "serve/gateway_state.hpp"

namespace infergrid::serve {

namespace {
constexpr const char* kKinds[6] = {"scale", "power_cap", "pair_limit", "shed", "route_weight", "schedule"};
}

GatewayControl::GatewayControl(Gateway& gw) : gw_(gw), since_(std::chrono::steady_clock::now()) {
  const auto& cfg = gw.cfg();
  controller_ = control::make_controller(cfg.controller, cfg.control, 1);
  for (std::size_t i = 0; i < gw.backends(); ++i)
    for (const auto& m : gw.backend(i).models) {
      const auto key = std::make_pair(gw.site_of(i), m);
      if (dep_index_.try_emplace(key, deps_.size()).second) deps_.push_back(key);
    }
  routed_ = std::make_unique<std::atomic<std::uint64_t>[]>(deps_.size());
  weight_ = std::make_unique<std::atomic<double>[]>(cfg.sites.size());
  for (std::size_t s = 0; s < cfg.sites.size(); ++s) weight_[s] = 1;
  for (auto& s : shed_) s = -1;
}

void GatewayControl::start() {
  if (controller_->period_s() <= 0) return;
  timer_ = std::make_unique<boost::asio::steady_timer>(gw_.ioc());
  tick();
}

void GatewayControl::tick() {
  timer_->expires_after(std::chrono::milliseconds(static_cast<std::int64_t>(controller_->period_s() * 1000)));
  timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    try {
      control::Decisions d;
      controller_->decide(observe(), d);
      apply(d);
      if (d.schedules.empty()) {
        std::lock_guard<std::mutex> lock(mu_);
        reconcile_schedules();
      }
      ticks_.fetch_add(1);
    } catch (const std::exception& e) {
      fmt::print(stderr, "gateway: controller {}: {}\n", controller_->name(), e.what());
    }
    tick();
  });
}

double GatewayControl::shed_at(int cls, double configured) const {
  const double v = shed_[static_cast<std::size_t>(std::clamp(cls, 0, control::kPriorities - 1))].load();
  return v > 0 ? v : configured;
}

void GatewayControl::routed(int site, const std::string& model) {
  const auto it = dep_index_.find({site, model});
  if (it != dep_index_.end()) routed_[it->second].fetch_add(1);
}

// What the gateway's monitoring sees: per site whether any backend is up; per (site, model) the
// usable backends as ready replicas, their scraped queues and KV usage, and the requests it
// routed there over the window. No power, pool or link figures: a gateway has none.
control::FleetView GatewayControl::observe() {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  const auto snap = gw_.snapshot();
  const auto& cfg = gw_.cfg();
  control::FleetView v;
  v.window_s = std::max(1e-3, std::chrono::duration<double>(now - since_).count());
  v.t_s = std::chrono::duration<double>(now.time_since_epoch()).count();
  since_ = now;
  for (std::size_t s = 0; s < cfg.sites.size(); ++s) {
    control::SiteState st;
    st.id = static_cast<int>(s);
    st.name = cfg.sites[s].name;
    // Up: a backend answers there, or it has a pool the orchestrator can start replicas in.
    st.up = !cfg.sites[s].pools.empty();
    for (std::size_t i = 0; i < gw_.backends(); ++i)
      if (gw_.site_of(i) == static_cast<int>(s) && gw_.orchestrator().routable(i) && !gw_.scrape_down(i)) st.up = true;
    v.sites.push_back(std::move(st));
  }
  for (std::size_t k = 0; k < deps_.size(); ++k) {
    const auto& [site, model] = deps_[k];
    control::DeploymentState d;
    d.id = static_cast<int>(k);
    d.site = site;
    d.model = model;
    double kv = 0, seqs = 0;
    int fixed = 0;
    for (std::size_t i = 0; i < gw_.backends(); ++i) {
      if (gw_.site_of(i) != site || !gw_.serves(i, model)) continue;
      fixed += gw_.backend(i).pool < 0;
      if (!gw_.available(i)) continue;
      const auto& o = snap->backends[i];
      ++d.ready;
      d.waiting += static_cast<int>(o.waiting);
      d.running += static_cast<int>(o.running);
      kv += o.kv;
      seqs += gw_.backend(i).max_concurrency;
    }
    d.kv_usage = d.ready ? kv / d.ready : 0;
    d.max_num_seqs = d.ready ? seqs / d.ready : 0;
    // Without a pool what is there is all there is; a pool adds its slots, starting and draining.
    d.max_replicas = std::max(d.ready, fixed);
    if (const int p = gw_.orchestrator().pool_of(site, model); p >= 0) {
      const auto c = gw_.orchestrator().counts(p);
      d.starting = c.starting;
      d.draining = c.draining;
      d.max_replicas = fixed + c.slots;
      d.cold_start_s = c.last_cold_start_s;
    }
    d.arrivals_per_s = static_cast<double>(routed_[k].exchange(0)) / v.window_s;
    if (const auto it = cfg.tpot_slo_ms.find(model); it != cfg.tpot_slo_ms.end()) d.slo_tpot_s = it->second / 1000;
    // The schedule its engines report (the first that does), as the twin reports its replicas'.
    for (std::size_t i = 0; i < gw_.backends(); ++i)
      if (gw_.site_of(i) == site && gw_.serves(i, model) && gw_.available(i) && snap->backends[i].step_target_s >= 0) {
        d.step_target_s = snap->backends[i].step_target_s;
        break;
      }
    v.deployments.push_back(std::move(d));
  }
  return v;
}

void GatewayControl::apply(const control::Decisions& d) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto count = [&](std::size_t kind, bool applied, std::size_t n) {
    (applied ? applied_ : unapplied_)[kind].fetch_add(n);
  };
  for (const auto& sc : d.scale) {
    // A pool scales to what the decision asks beyond the site's fixed backends.
    int pool = -1, fixed = 0;
    if (sc.deployment >= 0 && static_cast<std::size_t>(sc.deployment) < deps_.size()) {
      const auto& [site, model] = deps_[static_cast<std::size_t>(sc.deployment)];
      pool = gw_.orchestrator().pool_of(site, model);
      for (std::size_t i = 0; i < gw_.backends(); ++i)
        fixed += gw_.site_of(i) == site && gw_.serves(i, model) && gw_.backend(i).pool < 0 && gw_.available(i);
    }
    if (pool >= 0) gw_.orchestrator().scale(pool, std::max(0, sc.replicas - fixed));
    count(0, pool >= 0, 1);
  }
  count(1, false, d.power_caps.size());
  count(2, false, d.pair_limits.size());
  for (const auto& s : d.shed) {
    if (s.priority <= 0 || s.priority >= control::kPriorities) continue;  // critical is never shed
    shed_[static_cast<std::size_t>(s.priority)] = s.level;
    count(3, true, 1);
  }
  for (const auto& r : d.route_weights) {
    if (r.deployment < 0 || static_cast<std::size_t>(r.deployment) >= deps_.size()) continue;
    weight_[static_cast<std::size_t>(deps_[static_cast<std::size_t>(r.deployment)].first)] = std::max(0.0, r.weight);
    count(4, true, 1);
  }
  for (const auto& s : d.schedules) {
    if (s.deployment < 0 || static_cast<std::size_t>(s.deployment) >= deps_.size()) {
      count(5, false, 1);
      continue;
    }
    auto& w = schedules_[static_cast<std::size_t>(s.deployment)];
    const bool same = w.counted && w.s.step_target_s == s.step_target_s && w.s.prefill_reserve == s.prefill_reserve &&
                      w.s.priority == s.priority;
    if (!same) w = Wanted{s, false};  // a repeated decision is not counted again
  }
  reconcile_schedules();
}

void GatewayControl::reconcile_schedules() {
  const auto snap = gw_.snapshot();
  const auto now = std::chrono::steady_clock::now();
  for (auto& [k, want] : schedules_) {
    const auto& [site, model] = deps_[k];
    const auto& s = want.s;
    std::size_t cannot = 0;
    for (std::size_t i = 0; i < gw_.backends(); ++i) {
      if (gw_.site_of(i) != site || !gw_.serves(i, model) || !gw_.available(i)) continue;
      const auto& o = snap->backends[i];
      if (o.step_target_s < 0) {  // an engine that does not report its scheduler's settings
        ++cannot;
        continue;
      }
      const bool same = std::abs(o.step_target_s - s.step_target_s) < 1e-9 && std::abs(o.prefill_reserve - s.prefill_reserve) < 1e-9 &&
                        (o.priority > 0.5) == s.priority;
      if (same) continue;
      const auto it = posting_.find(i);
      if (it != posting_.end() && now - it->second < std::chrono::seconds(5)) continue;  // one at a time
      posting_[i] = now;
      const std::string body = fmt::format(R"({{"step_target_s": {}, "prefill_reserve": {}, "priority": {}}})", s.step_target_s,
                                           s.prefill_reserve, s.priority ? "true" : "false");
      gw_.post_json(i, "/admin/schedule", body, [this, i](int status) {
        std::lock_guard<std::mutex> lock(mu_);
        posting_.erase(i);
        (status == 200 ? applied_ : unapplied_)[5].fetch_add(1);
      });
    }
    if (!want.counted) {
      unapplied_[5].fetch_add(cannot);
      want.counted = true;
    }
  }
}

std::string GatewayControl::metrics() const {
  std::string out =
      "# HELP infergrid_gateway_control_decisions_total Controller decisions by kind: carried out here, or not "
      "(scale needs a pool at the site; a schedule, an infergrid engine: counted per engine that took it or not; power and bandwidth are not carried out by a gateway).\n# TYPE infergrid_gateway_control_decisions_total counter\n";
  for (std::size_t k = 0; k < std::size(kKinds); ++k)
    for (int a = 0; a < 2; ++a)
      out += fmt::format("infergrid_gateway_control_decisions_total{{kind=\"{}\",applied=\"{}\"}} {}\n", kKinds[k],
                         a ? "true" : "false", (a ? applied_ : unapplied_)[k].load());
  out += fmt::format("# HELP infergrid_gateway_control_ticks_total Controller periods run.\n"
                     "# TYPE infergrid_gateway_control_ticks_total counter\ninfergrid_gateway_control_ticks_total {}\n",
                     ticks_.load());
  return out;
}

}  // namespace infergrid::serve
