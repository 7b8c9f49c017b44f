// The baseline controllers: what each stands for is in docs/control.md.
//   static    the fleet as the world declares it; no decision ever.
//   reactive  llm-d's workload variant autoscaler on vLLM's num_requests_waiting and KV-cache
//             usage (saturation thresholds 0.8 / 5, spare triggers 0.1 / 3), one replica up or
//             down per 60 s decision.
//   skyserve  SkyServe's request-rate autoscaler: target = ceil(observed QPS / target QPS per
//             replica); scale up once the target has stayed above the fleet for the upscale
//             delay, down once below for the downscale delay.
//   dynamo    Dynamo planner's load-based mode: each 30 s adjustment interval, the load predicted
//             from the recent intervals (a moving average of `history` views; 1: its constant
//             predictor) of KV usage (0.9 up / 0.5 down) and queued prefills per replica (0.5 up /
//             0.2 down); one replica at a time, no scale-down for 3 intervals after a scale-up.
#include "control/fleet.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>

#include "control/scaling.hpp"
#include "core/error.hpp"

namespace infergrid::control {

namespace {

struct Spec {
  const char* name;
  Params defaults;
};

const std::vector<Spec>& specs() {
  static const std::vector<Spec> s = {
      {"static", {}},
      {"reactive",
       {{"period_s", 60}, {"kv_threshold", 0.8}, {"queue_threshold", 5}, {"kv_spare_trigger", 0.1},
        {"queue_spare_trigger", 3}, {"min_replicas", 1}}},
      {"skyserve",
       {{"period_s", 20}, {"target_qps_per_replica", 2}, {"upscale_delay_s", 300}, {"downscale_delay_s", 1200},
        {"min_replicas", 1}}},
      {"dynamo",
       {{"period_s", 30}, {"kv_scale_up", 0.9}, {"kv_scale_down", 0.5}, {"queue_scale_up", 0.5},
        {"queue_scale_down", 0.2}, {"history", 1}, {"grace_periods", 3}, {"min_replicas", 1}}},
      {"infergrid",
       {{"period_s", 10}, {"target_utilization", 0.95}, {"cold_start_s", 120}, {"downscale_delay_s", 300},
        {"downscale_margin", 0.1}, {"min_replicas", 1}, {"shed_batch_at", 0.3}, {"forecast_window_s", 60},
        {"forecast_alpha", 0.3}, {"forecast_beta", 0.2}, {"forecast_phi", 0.9}, {"surge_window_s", 30}, {"surge_z", 3.5},
        {"power_bound_at", 0.9}, {"shed_queue_s", 0.5}, {"shed_hold_s", 60}, {"step_margin", 1.0}, {"step_reserve", 0},
        {"slack_cap", 1.0}, {"slack_cap_below", 0.6}, {"slack_uncap_above", 0.85}}},
  };
  return s;
}

const Spec& spec(const std::string& name) {
  for (const auto& s : specs())
    if (name == s.name) return s;
  std::string all;
  for (const auto& s : specs()) all += (all.empty() ? "" : ", ") + std::string(s.name);
  core::fail_flag("controller", fmt::format("unknown controller '{}' ({})", name, all));
}

// Defaults overlaid by the given parameters; a parameter the controller does not read is an error.
// `name@model` sets a parameter for the deployments of one model (SkyServe's target QPS is per
// service, and a service is one model).
Params merged(const std::string& name, const Params& given) {
  Params p = spec(name).defaults;
  for (const auto& [k, v] : given) {
    const std::string base = k.substr(0, k.find('@'));
    if (!p.count(base) || (base.size() < k.size() && k.size() == base.size() + 1)) {
      std::string known;
      for (const auto& [d, _] : spec(name).defaults) known += (known.empty() ? "" : ", ") + d;
      core::fail_flag("control." + k, fmt::format("controller '{}' has no parameter '{}' ({}; NAME@MODEL for one model)",
                                                  name, k, known.empty() ? "none" : known));
    }
    if (!std::isfinite(v) || v < 0) core::fail_flag("control." + k, "must be a finite, non-negative number");
    p[k] = v;
  }
  if (p.count("period_s") && !(p["period_s"] > 0)) core::fail_flag("control.period_s", "must be positive");
  for (const auto& [k, v] : p) {
    const std::string base = k.substr(0, k.find('@'));
    if ((base == "min_replicas" || base == "history" || base == "grace_periods") && v != std::floor(v))
      core::fail_flag("control." + k, "must be a whole number");
    if (base == "history" && v < 1) core::fail_flag("control." + k, "must be at least 1");
    if ((base.rfind("kv_", 0) == 0) && v > 1) core::fail_flag("control." + k, "is a KV-cache fraction: at most 1");
  }
  if (p.count("target_utilization") && !(p["target_utilization"] > 0 && p["target_utilization"] <= 1))
    core::fail_flag("control.target_utilization", "must be in (0, 1]");
  for (const char* k : {"forecast_alpha", "forecast_beta", "forecast_phi"})
    if (p.count(k) && !(p[k] > 0 && p[k] <= 1)) core::fail_flag(std::string("control.") + k, "must be in (0, 1]");
  if (p.count("kv_scale_up") && p["kv_scale_down"] >= p["kv_scale_up"])
    core::fail_flag("control.kv_scale_down", "must be below kv_scale_up");
  if (p.count("target_qps_per_replica"))
    for (const auto& [k, v] : p)
      if (k.rfind("target_qps_per_replica", 0) == 0 && !(v > 0)) core::fail_flag("control." + k, "must be positive");
  return p;
}

class Static final : public Controller {
 public:
  const char* name() const override { return "static"; }
  double period_s() const override { return 0; }
  void decide(const FleetView&, Decisions&) override {}
};

// llm-d's workload variant autoscaler (its saturation analyzer, V1 thresholds): a replica is
// saturated at KV usage >= kv_threshold or waiting >= queue_threshold; over the others, spare
// KV (kv_threshold - usage) below kv_spare_trigger or spare queue below queue_spare_trigger adds
// one replica (not while one is still starting); one is removed only when spreading the load
// over one replica fewer still leaves both spares at or above their triggers, with at least two
// replicas unsaturated. One decision per period (its GLOBAL_OPT_INTERVAL, 60 s).
class Reactive final : public Controller {
 public:
  explicit Reactive(Params p) : p_(std::move(p)) {}
  const char* name() const override { return "reactive"; }
  double period_s() const override { return p_.at("period_s"); }
  void decide(const FleetView& v, Decisions& out) override {
    for (const auto& d : v.deployments) {
      const double kv_t = param(p_, "kv_threshold", d), q_t = param(p_, "queue_threshold", d);
      const double kv_s = param(p_, "kv_spare_trigger", d), q_s = param(p_, "queue_spare_trigger", d);
      if (!v.sites[static_cast<std::size_t>(d.site)].up) continue;
      if (d.ready == 0) {
        if (d.starting == 0 && param(p_, "min_replicas", d) > 0) out.scale.push_back({d.id, clamp_replicas(1, d, 1)});
        continue;
      }
      const double n = d.ready;
      const double kv = d.kv_usage, queue = static_cast<double>(d.waiting) / n;
      const bool saturated = kv >= kv_t || queue >= q_t;
      const bool up = saturated || kv_t - kv < kv_s || q_t - queue < q_s;
      if (up) {
        if (d.starting == 0 && d.ready < d.max_replicas) out.scale.push_back({d.id, d.ready + 1});
        continue;
      }
      if (d.ready <= std::max(1.0, param(p_, "min_replicas", d)) || d.ready < 2 || d.starting > 0) continue;
      const double kv1 = kv * n / (n - 1), q1 = queue * n / (n - 1);
      if (kv_t - kv1 >= kv_s && q_t - q1 >= q_s) out.scale.push_back({d.id, d.ready - 1});
    }
  }

 private:
  Params p_;
};

class SkyServe final : public Controller {
 public:
  explicit SkyServe(Params p) : p_(std::move(p)) {}
  const char* name() const override { return "skyserve"; }
  double period_s() const override { return p_.at("period_s"); }
  void decide(const FleetView& v, Decisions& out) override {
    for (const auto& d : v.deployments) {
      if (!v.sites[static_cast<std::size_t>(d.site)].up) continue;
      auto& st = state_[d.id];
      const int current = d.ready + d.starting;
      const int target = clamp_replicas(d.arrivals_per_s / param(p_, "target_qps_per_replica", d), d, param(p_, "min_replicas", d));
      if (current == 0 && target > 0) {  // SkyServe: the upscale delay is ignored from zero
        out.scale.push_back({d.id, target});
        continue;
      }
      st.up = target > current ? st.up + 1 : 0;
      st.down = target < current ? st.down + 1 : 0;
      const double period = p_.at("period_s");
      if (st.up > 0 && st.up * period >= param(p_, "upscale_delay_s", d)) {
        out.scale.push_back({d.id, target});
        st.up = 0;
      } else if (st.down > 0 && st.down * period >= param(p_, "downscale_delay_s", d)) {
        out.scale.push_back({d.id, target});
        st.down = 0;
      }
    }
  }

 private:
  struct State {
    int up = 0, down = 0;  // consecutive periods wanting more, or fewer
  };
  Params p_;
  std::map<int, State> state_;
};

class Dynamo final : public Controller {
 public:
  explicit Dynamo(Params p) : p_(std::move(p)) {}
  const char* name() const override { return "dynamo"; }
  double period_s() const override { return p_.at("period_s"); }
  void decide(const FleetView& v, Decisions& out) override {
    const auto n = static_cast<std::size_t>(std::max(1.0, p_.at("history")));
    for (const auto& d : v.deployments) {
      if (!v.sites[static_cast<std::size_t>(d.site)].up || d.ready == 0) continue;
      auto& h = history_[d.id];
      h.push_back({d.kv_usage, static_cast<double>(d.waiting) / d.ready});
      while (h.size() > n) h.pop_front();
      double kv = 0, queue = 0;
      for (const auto& [k, q] : h) kv += k, queue += q;
      kv /= static_cast<double>(h.size());
      queue /= static_cast<double>(h.size());
      if (d.starting > 0) continue;  // the planner waits for the last change to land
      auto& grace = grace_[d.id];
      if (grace > 0) --grace;
      const int current = d.ready;
      int target = current;
      if (kv > param(p_, "kv_scale_up", d) || queue > param(p_, "queue_scale_up", d)) target = current + 1;
      else if (grace == 0 && kv < param(p_, "kv_scale_down", d) && queue < param(p_, "queue_scale_down", d)) target = current - 1;
      target = clamp_replicas(target, d, param(p_, "min_replicas", d));
      if (target != current) {
        out.scale.push_back({d.id, target});
        if (target > current) grace = static_cast<int>(param(p_, "grace_periods", d));
        h.clear();
      }
    }
  }

 private:
  Params p_;
  std::map<int, std::deque<std::pair<double, double>>> history_;
  std::map<int, int> grace_;  // intervals left with no scale-down after a scale-up
};

}  // namespace

std::unique_ptr<Controller> make_controller(const std::string& name, const Params& params, std::uint64_t) {
  Params p = merged(name, params);
  if (name == "static") return std::make_unique<Static>();
  if (name == "reactive") return std::make_unique<Reactive>(std::move(p));
  if (name == "skyserve") return std::make_unique<SkyServe>(std::move(p));
  if (name == "infergrid") return make_infergrid_controller(std::move(p));
  return std::make_unique<Dynamo>(std::move(p));
}

std::vector<std::string> controller_names() {
  std::vector<std::string> out;
  for (const auto& s : specs()) out.emplace_back(s.name);
  return out;
}

Params controller_defaults(const std::string& name) { return spec(name).defaults; }

}  // namespace infergrid::control
