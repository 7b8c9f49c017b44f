#pragma once
// The control seam shared by the twin and the gateway. A host (the planet twin, or the live
// gateway) observes its fleet as an operator's monitoring would (counters over a recent window,
// never the world's true rate) into a FleetView; a Controller reads the view and writes
// Decisions; the host carries them out with its own mechanisms (replica lifecycle, power caps,
// shedding, bandwidth bounds, routing weights). Controllers touch no clock, socket or queue:
// the same view gives the same decisions in either host (docs/control.md).
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/priority.hpp"

namespace infergrid::control {

// Priorities as core names them: 0 critical, 1 interactive, 2 batch.
constexpr int kPriorities = core::kPriorityCount;

struct SiteState {
  int id = 0;
  std::string name;
  bool up = true;
  double power_kw = 0;         // facility draw over the last window (IT x PUE, hosts included)
  double budget_kw = 0;        // facility budget now (0: none)
  double carbon_g_per_kwh = 0;
  std::map<std::string, int> free_accelerators;  // type -> count not held by any replica
};

struct DeploymentState {
  int id = 0, site = 0;
  std::string model, accelerator;
  int tp = 1;
  int ready = 0, starting = 0, draining = 0;  // replicas by lifecycle phase
  int max_replicas = 0;   // what the site's pool could hold for this deployment
  int waiting = 0, running = 0;  // summed over ready replicas (vllm:num_requests_waiting/running)
  double kv_usage = 0;    // mean over ready replicas, [0, 1]
  double power_cap = 1;   // fraction of board power
  double arrivals_per_s = 0;  // requests routed to it over the window (the gateway's counter)
  double max_num_seqs = 0;    // per replica
  double cold_start_s = 0;    // the last measured start (pull + load + warm-up); 0: none yet
  double power_kw = 0;        // IT draw of its replicas over the window
  // What the requests routed to it over the window asked for (means; 0: none routed).
  double mean_prompt_tokens = 0, mean_output_tokens = 0;
  // Requests per second one replica sustains for that mix, from the host's engine model (a prefill
  // of the mean prompt plus the mean output decoded at a batch that keeps TPOT within its SLO);
  // 0: the host has no engine model (the gateway), or nothing was routed.
  double capacity_rps = 0;
  // The tightest TPOT SLO of the classes its model serves (operator configuration; 0: none known),
  // and the step target its replicas schedule to now (0: none).
  double slo_tpot_s = 0, step_target_s = 0;
};

struct LinkState {
  int id = 0, a = 0, b = 0;
  double capacity_bytes_s = 0;          // each way, now
  double carried_bytes_s = 0;           // the busier way, now
  // The busier way's rate by link class (0 critical, 1 interactive, 2 retrieval, 3 batch,
  // 4 sync and weights), from the flows crossing it now.
  std::array<double, 5> carried_by_class{};
  // What is offered beyond that rate: bytes the flows crossing the busier way still have to
  // move, by class (a sender's queue depth; elastic flows have no offered rate of their own).
  std::array<double, 5> backlog_by_class{};
};

struct DemandState {
  std::string group;   // a metro group (the country)
  int priority = 1;
  double arrivals_per_s = 0;  // observed over the window
  double ttft_ms_mean = 0;    // of requests completed in the window (0: none)
};

struct FleetView {
  double t_s = 0;       // when it was observed
  double window_s = 0;  // the window its rates and means cover
  std::vector<SiteState> sites;
  std::vector<DeploymentState> deployments;
  std::vector<LinkState> links;
  std::vector<DemandState> demand;
};

struct Decisions {
  struct Scale {
    int deployment = 0, replicas = 0;
  };
  struct PowerCap {
    int deployment = 0;
    double cap = 1;  // fraction of board power, (0, 1]
  };
  struct PairLimit {
    int src = 0, dst = 0;  // sites
    int link_class = 0;    // the twin's link class (0 critical ... 4 sync)
    double bytes_s = 0;    // < 0: remove the limit
  };
  // A guaranteed rate for a class on a site pair (--bandwidth te: served in the first tier).
  struct PairReservation {
    int src = 0, dst = 0, link_class = 0;
    double bytes_s = 0;  // <= 0: remove it
  };
  struct Shed {
    int priority = 1;  // never 0: critical is never shed
    double level = 0;  // shed when the chosen deployment's load (outstanding per slot) passes this; <= 0: off
  };
  struct RouteWeight {
    int deployment = 0;
    double weight = 1;  // 0: routers skip it while another candidate remains
  };
  // How a deployment's replicas schedule (from their next iteration): the iteration time their
  // scheduler keeps to when it adds prefill, Sarathi-Serve's token budget from the TPOT SLO (<= 0:
  // the token budget alone), and priority order (vLLM --scheduling-policy priority).
  struct Schedule {
    int deployment = 0;
    double step_target_s = 0;
    double prefill_reserve = 0;  // the share of the target kept for prefill (EngineConfig)
    bool priority = false;
  };
  std::vector<Scale> scale;
  std::vector<PowerCap> power_caps;
  std::vector<PairLimit> pair_limits;
  std::vector<PairReservation> pair_reservations;
  std::vector<Shed> shed;
  std::vector<RouteWeight> route_weights;
  std::vector<Schedule> schedules;
  bool empty() const {
    return scale.empty() && power_caps.empty() && pair_limits.empty() && pair_reservations.empty() && shed.empty() &&
           route_weights.empty() && schedules.empty();
  }
};

// Named numeric parameters of a controller (from the world YAML's `control:` section).
using Params = std::map<std::string, double>;

class Controller {
 public:
  virtual ~Controller() = default;
  virtual const char* name() const = 0;
  // Seconds between decisions (the host observes and applies at this period); 0: never.
  virtual double period_s() const = 0;
  // Reads one view and appends its decisions. State kept between calls is the controller's
  // own (cooldowns, history), so a run is a function of the views and the seed.
  virtual void decide(const FleetView& view, Decisions& out) = 0;
};

class ControlHost {
 public:
  virtual ~ControlHost() = default;
  virtual FleetView observe() = 0;
  virtual void apply(const Decisions& d) = 0;
};

// static, reactive, skyserve, dynamo. Unknown parameters are an error naming them.
std::unique_ptr<Controller> make_controller(const std::string& name, const Params& params, std::uint64_t seed);
std::vector<std::string> controller_names();
// The parameters a controller reads, with their defaults (for docs and errors).
Params controller_defaults(const std::string& name);

}  // namespace infergrid::control
