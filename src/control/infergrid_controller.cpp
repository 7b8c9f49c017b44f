// infergrid's controller: capacity in time. Per deployment it forecasts the observed arrivals,
// averaged over forecast_window_s (Holt's level and trend with CUSUM change points,
// control/forecast.hpp), at a horizon of the deployment's cold start (its last measured pull +
// load + warm-up, else cold_start_s) plus a period, and holds enough replicas for the forecast's
// p90 at target_utilization of each replica's sustained rate (the host's engine-model estimate for
// the mix it was sent, DeploymentState::capacity_rps). Between forecast steps a surge check on the
// last surge_window_s (a Poisson test against the forecast's median) answers a step at once.
// Scale-up is immediate, so replicas are ready when the forecast load arrives; scale-down waits
// until the load fits one replica fewer with a margin (downscale_margin) for downscale_delay_s,
// then drains one replica a minute. When a deployment wants more than its pool can hold, batch is
// shed (at shed_batch_at outstanding per slot) so that interactive and critical keep the
// capacity; critical is never shed. Power: a site drawing power_bound_at of its budget, or
// capping, is power-bound; one whose budget is cut below the highest seen there (an emergency)
// keeps its width (no scale-down: capped replicas serve more per watt than fewer uncapped ones on
// memory-bound decode); a new cap re-reads the replicas' rate at once; while a deployment is
// short where power binds (it cannot start more) or in its pool
// with a queue, interactive is shed too, at the level that holds its queue to shed_queue_s of
// its capacity (raised above every other deployment's load, so that it binds only where it is
// short) and for shed_hold_s after: critical keeps its SLO at a power emergency. Every
// deployment's replicas schedule in priority order and keep each iteration within step_margin of
// its classes' tightest TPOT SLO (Sarathi-Serve's SLO-derived budget: a prefill waits rather than
// stretch every running decode past it; 0: off). docs/control.md "infergrid".
#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <memory>

#include "control/forecast.hpp"
#include "control/scaling.hpp"

namespace infergrid::control {

namespace {

class InferGrid final : public Controller {
 public:
  explicit InferGrid(Params p) : p_(std::move(p)) {}
  const char* name() const override { return "infergrid"; }
  double period_s() const override { return p_.at("period_s"); }

  void decide(const FleetView& v, Decisions& out) override {
    const double period = p_.at("period_s");
    const double window = std::max(period, p_.at("forecast_window_s"));
    const double surge_window = std::max(period, p_.at("surge_window_s"));
    const auto surge_n = static_cast<std::size_t>(std::max(1.0, std::round(surge_window / period)));
    bool short_of_pool = false;
    // Interactive shedding: the levels (outstanding per slot) that would hold each overloaded
    // deployment's queue to shed_queue_s of its capacity, and the load of the others.
    double overloaded_level = 1e300, healthy_load = 0;
    bool overloaded = false;
    for (const auto& d : v.deployments) {
      if (!v.sites[static_cast<std::size_t>(d.site)].up) continue;
      auto& st = state_[d.id];
      // The schedule: critical first, and iterations within the TPOT SLO with a margin.
      const double margin = param(p_, "step_margin", d);
      const double step = margin > 0 && d.slo_tpot_s > 0 ? margin * d.slo_tpot_s : 0;
      if (!st.scheduled || std::abs(step - d.step_target_s) > 1e-9) {
        out.schedules.push_back({d.id, step, param(p_, "step_reserve", d), true});
        st.scheduled = true;
      }
      if (!st.fc) {
        ForecastConfig fc;
        // Minutes ahead: Holt's level and trend over window means (a one-slot season that stays
        // 0), with CUSUM re-levelling at a surge; the daily shape is left to a day-ahead plan.
        fc.step_s = window;
        fc.season_s = window;
        fc.gamma = 0;
        fc.alpha = p_.at("forecast_alpha");
        fc.beta = p_.at("forecast_beta");
        fc.phi = p_.at("forecast_phi");
        st.fc = std::make_unique<Forecaster>(fc);
      }
      // The window's mean rate feeds the forecaster once per window; the last few periods are
      // kept for the surge check.
      st.acc += d.arrivals_per_s * period;
      st.acc_s += period;
      st.recent.push_back(d.arrivals_per_s);
      while (st.recent.size() > surge_n) st.recent.pop_front();
      if (st.acc_s >= window - 1e-9) {
        st.last_mean = st.acc / st.acc_s;
        // A Poisson count's noise over the window, at the larger of the level and the observation.
        const double level = st.fc->observations() > 0 ? st.fc->forecast(window).p50 : st.last_mean;
        st.fc->observe(st.last_mean, std::sqrt(std::max({st.last_mean, level, 1 / window}) / window));
        st.acc = st.acc_s = 0;
      }
      // Smoothed over the mix's noise; a new power cap changes the rate at once.
      if (d.capacity_rps > 0)
        st.capacity = st.capacity > 0 && d.power_cap == st.cap_seen ? 0.8 * st.capacity + 0.2 * d.capacity_rps : d.capacity_rps;
      st.cap_seen = d.power_cap;
      if (st.capacity <= 0) continue;  // nothing routed yet: no mix to size for
      const double lead = (d.cold_start_s > 0 ? d.cold_start_s : param(p_, "cold_start_s", d)) + period;
      double recent = 0;
      for (double r : st.recent) recent += r;
      recent /= static_cast<double>(st.recent.size());
      Forecaster::Quantiles q{recent, recent};
      double observed = recent;
      if (st.fc->observations() > 0) {
        // The forecast value is a window's mean: its midpoint lies window/2 plus what has passed
        // of the current window behind now.
        q = st.fc->forecast(lead + window / 2 + st.acc_s);
        observed = st.last_mean;
      }
      // A step between forecast steps: the mean of the last k periods (k = 1 .. the surge window)
      // above the p90 and beyond Poisson noise around the median (surge_z standard deviations of a
      // count over k periods); the highest such mean is the load now. One period catches a large
      // step at once, the whole window a smaller one.
      double surge = 0, sum = 0;
      for (std::size_t k = 1; k <= st.recent.size(); ++k) {
        sum += st.recent[st.recent.size() - k];
        const double s_w = static_cast<double>(k) * period, mean = sum / static_cast<double>(k);
        const double noise = std::sqrt(std::max(q.p50, 1 / s_w) / s_w);
        if (mean > q.p90 && mean > q.p50 + param(p_, "surge_z", d) * noise) surge = std::max(surge, mean);
      }
      // The forecast load, and what is queued now drained over the lead time.
      const double rate = std::max({q.p90, observed, surge}) + d.waiting / lead;
      const double per_replica = st.capacity * param(p_, "target_utilization", d);
      const double want = rate / per_replica;
      const int target = clamp_replicas(want, d, param(p_, "min_replicas", d));
      // Short of what the pool can hold, with a queue: batch (its SLO is minutes) gives way. While
      // replicas are only starting it waits instead: they will be ready within its SLO.
      const int current = d.ready + d.starting;
      const auto& site = v.sites[static_cast<std::size_t>(d.site)];
      // Capped below what this controller set: the site's budget holds it.
      const double own_cap = st.capped ? param(p_, "slack_cap", d) : 1.0;
      const bool power_bound = site.budget_kw > 0 && (site.power_kw >= param(p_, "power_bound_at", d) * site.budget_kw ||
                                                      d.power_cap < own_cap - 1e-3);
      // Short: more wanted than the pool holds, or than the power there lets start.
      const bool short_now = std::ceil(want - 1e-9) > d.max_replicas || (power_bound && std::ceil(want - 1e-9) > current);
      short_of_pool |= short_now && d.waiting > 0;
      const double slots = std::max(1.0, d.ready * d.max_num_seqs);
      const double capacity_now = st.capacity * d.ready;
      // Overloaded: short with a queue, nothing on the way, and no way to grow (power binds, or
      // the pool is all in use).
      const bool can_grow = !power_bound && current < d.max_replicas;
      if (short_now && !can_grow && d.starting == 0 && d.ready > 0 && d.waiting > d.ready) {
        overloaded = true;
        overloaded_level = std::min(overloaded_level, (d.running + capacity_now * param(p_, "shed_queue_s", d)) / slots);
      } else if (d.ready > 0) {
        healthy_load = std::max(healthy_load, (d.running + d.waiting) / slots);
      }
      // Down only when the load fits one replica fewer with room to spare (no flapping at a
      // boundary), and never where power binds.
      // A budget cut below the highest seen there (a power emergency): width is kept.
      double& budget_seen = budget_seen_[d.site];
      budget_seen = std::max(budget_seen, site.budget_kw);
      const bool emergency = site.budget_kw > 0 && site.budget_kw < 0.95 * budget_seen;
      const bool fits_fewer = !emergency && want * (1 + param(p_, "downscale_margin", d)) <= current - 1;
      // Power where the fleet has slack (slack_cap < 1): cap the GPUs of a deployment whose load
      // is well inside its ready replicas. A cap near the decode draw costs memory-bound decode
      // nothing and prefill its clock (perf_model: compute clock ~ ((cap - idle) / (p - idle))^(1/3));
      // uncapped again, at once, when the load nears its width, a surge shows, a queue forms, or
      // power binds (the budget's caps take over there).
      const double slack_cap = param(p_, "slack_cap", d);
      if (slack_cap < 1 && !power_bound) {
        const double load = current > 0 ? want / current : 1e300;
        const bool tight = load > param(p_, "slack_uncap_above", d) || surge > 0 || d.waiting > d.ready;
        const bool slack = load < param(p_, "slack_cap_below", d) && d.starting == 0;
        if (st.capped && tight) {
          out.power_caps.push_back({d.id, 1.0});
          st.capped = false;
        } else if (!st.capped && slack) {
          out.power_caps.push_back({d.id, slack_cap});
          st.capped = true;
        }
      }
      if (target > current) {
        out.scale.push_back({d.id, target});
        st.below_s = 0;
      } else if (target < current && fits_fewer) {
        st.below_s += period;
        if (st.below_s >= param(p_, "downscale_delay_s", d)) {
          out.scale.push_back({d.id, current - 1});
          st.below_s -= 60;  // then one a minute while the forecast stays below
        }
      } else {
        st.below_s = 0;
      }
    }
    const double shed = short_of_pool ? p_.at("shed_batch_at") : 0.0;
    if (shed != shedding_) {
      out.shed.push_back({2, shed});
      shedding_ = shed;
    }
    // Interactive gives way to critical where a deployment is overloaded and cannot grow, at a
    // level above every other deployment's load; lifted once no deployment is.
    if (overloaded) {
      overloaded_since_ = 0;
      level_i_ = std::max(overloaded_level, 1.05 * healthy_load);
    } else if (shedding_interactive_ > 0) {
      overloaded_since_ += period;  // held for shed_hold_s, then lifted: no flapping
    }
    const double shed_i = overloaded || (shedding_interactive_ > 0 && overloaded_since_ < p_.at("shed_hold_s")) ? level_i_ : 0.0;
    if (shed_i != shedding_interactive_) {
      out.shed.push_back({1, shed_i});
      shedding_interactive_ = shed_i;
    }
  }

 private:
  struct State {
    std::unique_ptr<Forecaster> fc;
    double capacity = 0;       // one replica's sustained rate, smoothed over the host's estimates
    double cap_seen = 1;       // the power cap that rate was measured at
    double below_s = 0;        // how long the load has fit one replica fewer
    double acc = 0, acc_s = 0;  // arrivals and seconds of the forecast window under way
    double last_mean = 0;      // the last whole window's mean rate
    std::deque<double> recent;  // the last periods' rates, for the surge check
    bool scheduled = false;     // its schedule has been sent
    bool capped = false;        // at slack_cap
  };
  Params p_;
  std::map<int, State> state_;
  double shedding_ = 0, shedding_interactive_ = 0;
  double level_i_ = 0, overloaded_since_ = 0;
  std::map<int, double> budget_seen_;  // per site, the highest budget observed
};

}  // namespace

std::unique_ptr<Controller> make_infergrid_controller(Params p) { return std::make_unique<InferGrid>(std::move(p)); }

}  // namespace infergrid::control
