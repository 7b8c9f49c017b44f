// The baseline controllers: what each stands for is in docs/control.md.
//   static    the fleet as the world declares it; no decision ever.
//   reactive  llm-d's recommended autoscaling (KEDA / the Kubernetes HPA on vLLM's
//             num_requests_waiting and KV-cache usage): desired = ceil(ready x metric / target),
//             the larger over the metrics, a 10% tolerance, scale-down held by a stabilization
//             window (the highest desire over the last 300 s).
//   skyserve  SkyServe's request-rate autoscaler: target = ceil(observed QPS / target QPS per
//             replica); scale up once the target has stayed above the fleet for the upscale
//             delay, down once below for the downscale delay.
//   dynamo    Dynamo planner's load-based mode: each adjustment interval, predicted load from the
//             recent intervals (a moving average, its constant predictor) of KV usage and queued
//             prefills per replica against thresholds; one replica up or down at a time.
#include "control/fleet.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>

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
       {{"period_s", 15}, {"target_waiting", 5}, {"target_kv_usage", 0.8}, {"tolerance", 0.1},
        {"scale_down_window_s", 300}, {"min_replicas", 1}}},
      {"skyserve",
       {{"period_s", 20}, {"target_qps_per_replica", 2}, {"upscale_delay_s", 300}, {"downscale_delay_s", 1200},
        {"min_replicas", 1}}},
      {"dynamo",
       {{"period_s", 10}, {"kv_scale_up", 0.9}, {"kv_scale_down", 0.5}, {"queue_scale_up", 5},
        {"queue_scale_down", 0.2}, {"history", 3}, {"min_replicas", 1}}},
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
Params merged(const std::string& name, const Params& given) {
  Params p = spec(name).defaults;
  for (const auto& [k, v] : given) {
    if (!p.count(k)) {
      std::string known;
      for (const auto& [d, _] : p) known += (known.empty() ? "" : ", ") + d;
      core::fail_flag("control." + k, fmt::format("controller '{}' has no parameter '{}' ({})", name, k,
                                                  known.empty() ? "none" : known));
    }
    if (!std::isfinite(v) || v < 0) core::fail_flag("control." + k, "must be a finite, non-negative number");
    p[k] = v;
  }
  if (p.count("period_s") && !(p["period_s"] > 0)) core::fail_flag("control.period_s", "must be positive");
  return p;
}

int clamp_replicas(double want, const DeploymentState& d, double min_replicas) {
  const int lo = static_cast<int>(std::min<double>(min_replicas, d.max_replicas));
  return std::clamp(static_cast<int>(std::ceil(want - 1e-9)), lo, std::max(lo, d.max_replicas));
}

class Static final : public Controller {
 public:
  const char* name() const override { return "static"; }
  double period_s() const override { return 0; }
  void decide(const FleetView&, Decisions&) override {}
};

class Reactive final : public Controller {
 public:
  explicit Reactive(Params p) : p_(std::move(p)) {}
  const char* name() const override { return "reactive"; }
  double period_s() const override { return p_.at("period_s"); }
  void decide(const FleetView& v, Decisions& out) override {
    for (const auto& d : v.deployments) {
      if (!v.sites[static_cast<std::size_t>(d.site)].up) continue;
      auto& hist = history_[d.id];
      const int current = d.ready + d.starting;
      if (hist.empty()) hist.push_back({v.t_s, current});  // the window starts from the fleet as found
      int desired = current;
      if (d.ready > 0) {
        const double waiting = static_cast<double>(d.waiting) / d.ready;
        const double r_wait = waiting / p_.at("target_waiting");
        const double r_kv = d.kv_usage / p_.at("target_kv_usage");
        const double ratio = std::max(r_wait, r_kv);
        if (std::abs(ratio - 1) > p_.at("tolerance")) desired = clamp_replicas(d.ready * ratio, d, p_.at("min_replicas"));
        // Replicas still starting are counted as the HPA counts unready pods: not yet capacity,
        // but not asked for twice.
        if (desired > d.ready && desired <= current) desired = current;
      } else if (d.starting == 0) {
        desired = clamp_replicas(p_.at("min_replicas"), d, p_.at("min_replicas"));
      }
      // Scale-down stabilization: act on the highest desire of the window.
      hist.push_back({v.t_s, desired});
      while (!hist.empty() && hist.front().first < v.t_s - p_.at("scale_down_window_s")) hist.pop_front();
      int held = desired;
      for (const auto& [_, want] : hist) held = std::max(held, want);
      const int target = desired > current ? desired : std::min(current, held);
      if (target != current) out.scale.push_back({d.id, target});
    }
  }

 private:
  Params p_;
  std::map<int, std::deque<std::pair<double, int>>> history_;
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
      const int target = clamp_replicas(d.arrivals_per_s / p_.at("target_qps_per_replica"), d, p_.at("min_replicas"));
      st.up = target > current ? st.up + 1 : 0;
      st.down = target < current ? st.down + 1 : 0;
      const double period = p_.at("period_s");
      if (st.up > 0 && st.up * period >= p_.at("upscale_delay_s")) {
        out.scale.push_back({d.id, target});
        st.up = 0;
      } else if (st.down > 0 && st.down * period >= p_.at("downscale_delay_s")) {
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
      const int current = d.ready;
      int target = current;
      if (kv > p_.at("kv_scale_up") || queue > p_.at("queue_scale_up")) target = current + 1;
      else if (kv < p_.at("kv_scale_down") && queue < p_.at("queue_scale_down")) target = current - 1;
      target = clamp_replicas(target, d, p_.at("min_replicas"));
      if (target != current) {
        out.scale.push_back({d.id, target});
        h.clear();
      }
    }
  }

 private:
  Params p_;
  std::map<int, std::deque<std::pair<double, double>>> history_;
};

}  // namespace

std::unique_ptr<Controller> make_controller(const std::string& name, const Params& params, std::uint64_t) {
  Params p = merged(name, params);
  if (name == "static") return std::make_unique<Static>();
  if (name == "reactive") return std::make_unique<Reactive>(std::move(p));
  if (name == "skyserve") return std::make_unique<SkyServe>(std::move(p));
  return std::make_unique<Dynamo>(std::move(p));
}

std::vector<std::string> controller_names() {
  std::vector<std::string> out;
  for (const auto& s : specs()) out.emplace_back(s.name);
  return out;
}

Params controller_defaults(const std::string& name) { return spec(name).defaults; }

}  // namespace infergrid::control
