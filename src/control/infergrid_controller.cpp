// infergrid's controller: capacity in time. Per deployment it forecasts the observed arrivals
// (Holt-Winters with change points, control/forecast.hpp) at a horizon of the deployment's cold
// start (its last measured pull + load + warm-up, else cold_start_s) plus a period, and holds
// enough replicas for the forecast's p90 at target_utilization of each replica's sustained rate
// (the host's engine-model estimate for the mix it was sent, DeploymentState::capacity_rps).
// Scale-up is immediate, so replicas are ready when the forecast load arrives; scale-down waits
// downscale_delay_s and then drains one replica a minute. When a deployment wants more than its
// pool holds, batch is shed (at shed_batch_at outstanding per slot) so that interactive and
// critical keep the capacity; critical is never shed. docs/control.md "infergrid".
#include <cmath>
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
    bool short_of_pool = false;
    for (const auto& d : v.deployments) {
      if (!v.sites[static_cast<std::size_t>(d.site)].up) continue;
      auto& st = state_[d.id];
      if (!st.fc) {
        ForecastConfig fc;
        // Minutes ahead: Holt's level and trend (a one-slot season that stays 0), with CUSUM
        // re-levelling at a surge; the daily shape is left to a day-ahead plan (not built yet).
        fc.step_s = period;
        fc.season_s = period;
        fc.gamma = 0;
        fc.alpha = 0.5;
        fc.beta = 0.1;
        st.fc = std::make_unique<Forecaster>(fc);
      }
      st.fc->observe(d.arrivals_per_s);
      if (d.capacity_rps > 0) st.capacity = d.capacity_rps;
      if (st.capacity <= 0) continue;  // nothing routed yet: no mix to size for
      const double lead = (d.cold_start_s > 0 ? d.cold_start_s : param(p_, "cold_start_s", d)) + period;
      const auto q = st.fc->forecast(lead);
      // The forecast load, and what is queued now drained over the lead time.
      const double rate = std::max(q.p90, d.arrivals_per_s) + d.waiting / lead;
      const double want = rate / (st.capacity * param(p_, "target_utilization", d));
      const int target = clamp_replicas(want, d, param(p_, "min_replicas", d));
      // Short of ready capacity (the pool is full, or replicas are still starting) with a queue.
      short_of_pool |= std::ceil(want - 1e-9) > d.ready && d.waiting > 0;
      const int current = d.ready + d.starting;
      if (target > current) {
        out.scale.push_back({d.id, target});
        st.below_s = 0;
      } else if (target < current) {
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
  }

 private:
  struct State {
    std::unique_ptr<Forecaster> fc;
    double capacity = 0;  // the last estimate of one replica's sustained rate
    double below_s = 0;   // how long the target has been below the replicas held
  };
  Params p_;
  std::map<int, State> state_;
  double shedding_ = 0;
};

}  // namespace

std::unique_ptr<Controller> make_infergrid_controller(Params p) { return std::make_unique<InferGrid>(std::move(p)); }

}  // namespace infergrid::control
