#pragma once
// The planet-scale twin: users in every metro send requests of several classes; a site router
// picks a site; bytes move as flows over metro access links and the DCI backbone (strict
// priority between classes, max-min within one); reasoning requests retrieve from corpus shards
// at other sites; each site's replicas run the single-site engine model; repositories publish
// artifacts that every site pulls; scenario events fail sites and links and surge demand.
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/sketch.hpp"
#include "core/units.hpp"
#include "engine/replica.hpp"
#include "model/catalog.hpp"
#include "world/world.hpp"

namespace infergrid::control {
class Controller;
}

namespace infergrid::twin {

struct PlanetConfig {
  std::string router = "nearest";
  // The fleet's controller (src/control: static, reactive, skyserve, dynamo), with the world's
  // `control:` parameters for it.
  std::string controller = "static";
  // A controller object instead of a named one (tests, and hosts embedding the twin).
  std::shared_ptr<control::Controller> controller_impl;
  // Parameters of the selected controller over the world's (`--control NAME=VALUE`).
  std::map<std::string, double> control_params;
  std::uint64_t seed = 1;
  double hours = 24;
  double scale = 1;  // multiplies the world's requests per day
  // Transfers smaller than this are not contended flows: their bytes are counted on the links
  // they cross and they take latency plus size over the link's capacity (docs/planet.md).
  double flow_threshold_bytes = 256e3;
  int max_attempts = 3;           // a request is lost after this many failed sites
  double retry_detect_ms = 1000;  // the gateway notices a dead site after this long
  double response_bytes_per_token = 200;  // one SSE chunk per token
  double bucket_s = 900;          // time-series resolution
  double window_recovery_s = 1800;  // the event window runs this long past the last event's end
  // DCI bandwidth: "fair" (every flow on its lowest-latency route, strict priority between
  // classes, max-min within) or "te" (the te module's tiered max-min on k paths per site pair
  // and class, re-solved every te_interval_s and on link and demand events; flows are bounded
  // to their aggregate's allocation on the path they are given).
  std::string bandwidth = "fair";
  double te_interval_s = 30;
  double te_horizon_s = 1;  // an aggregate's demand: its bytes left over this horizon
  int te_paths = 3;
  engine::EngineConfig engine;
  // Engines cache prompt prefixes (vLLM --enable-prefix-caching); conversations share them.
  bool prefix_caching = true;
  // GB of host memory per accelerator for the engines' KV tier; < 0: the world's fleet.kv_host_gb_per_gpu.
  double kv_host_gb_per_gpu = -1;
  // GB of local SSD per accelerator for the tier under it; < 0: the world's fleet.kv_ssd_gb_per_gpu.
  double kv_ssd_gb_per_gpu = -1;
  // Background bulk copies offered on every link, as a share of its capacity; < 0: the world's
  // (bulk.load and each link's bulk_load).
  double bulk_load = -1;
  // Deployments of at least this many replica slots keep their ready replicas ordered by load for
  // the site balancer (the same pick as a scan, in O(log n)); smaller ones are scanned.
  int index_replicas_from = 32;
  // One CSV row per request (completed, rejected or lost) to this path; empty: none.
  std::string requests_csv;
};

// Per class of traffic.
struct ClassStats {
  std::uint64_t arrived = 0, completed = 0, rejected = 0, lost = 0, met_slo = 0;
  std::uint64_t output_tokens = 0, retried = 0;
  std::map<std::string, std::uint64_t> rejected_by_reason;
  std::uint64_t prompt_tokens = 0, cached_tokens = 0;  // of completed requests
  // Of the requests that arrived within the scenario's event window (PlanetResult::window_*).
  std::uint64_t window_arrived = 0, window_met_slo = 0;
  core::QuantileSketch ttft, tpot, e2e, network, retrieval, queue, compute;
};

struct SiteStats {
  std::uint64_t routed = 0, completed = 0, evacuated = 0;
  std::uint64_t pd_decoded = 0;  // decodes handed here by a disaggregated deployment elsewhere
  double it_energy_j = 0;       // accelerators (from the engine model)
  double host_energy_j = 0;     // hosts beside them (host watts per accelerator x GPU-seconds held)
  double peak_kw = 0;           // highest bucket average, facility (x PUE)
  std::uint64_t buckets_over_cap = 0;
  std::int64_t peak_outstanding = 0;
};

struct LinkStats {
  double bytes_ab = 0, bytes_ba = 0;  // every byte, bulk copies included
  double bulk_ab = 0, bulk_ba = 0;    // of which background bulk copies
  double bulk_peak_backlog_s = 0;     // the longest its bulk backlog would take to drain at full capacity
  double peak_util = 0;  // highest bucket average, either direction
  double peak_p99_1s = 0;  // highest per-bucket p99 of 1-second utilization
};

// Per deployment (a model at a site): its fleet over the run.
struct DeploymentStats {
  std::string site, model, accelerator;
  int tp = 1, ep = 1, nominal = 0, slots = 0, peak_ready = 0;
  std::uint64_t starts = 0, stops = 0, refused = 0;
  std::uint64_t restarts = 0;  // reloads (weights from local disk + warm-up) after an outage or capacity loss
  std::vector<double> saturation;  // per minute: mean of max(KV usage, running / max_num_seqs) over serving replicas
  std::map<std::string, std::uint64_t> refused_by;
  double gpu_hours = 0, weight_bytes_moved = 0, energy_j = 0;
  core::QuantileSketch cold_pull{0.005}, cold_load{0.005}, cold_total{0.005};
  double min_cap = 1;  // lowest power cap applied, fraction of board power
  std::uint64_t rolled = 0;  // replicas started by rolling updates
  int version = 0;           // model versions rolled to
};

// Per site: power sampled every power window.
struct SitePowerStats {
  double mean_kw = 0, peak_kw = 0, budget_kw = 0;  // facility (hosts included, x PUE)
  std::uint64_t windows = 0, breach_windows = 0, capped_windows = 0;
};

struct Staleness {
  std::string artifact, site;
  double published_s = 0;
  double ready_s = -1;  // -1: never reached in the run
};

struct Bucket {
  double t_s = 0;
  std::vector<std::uint64_t> arrivals;  // per class
  std::uint64_t completed = 0, lost = 0;
  core::QuantileSketch ttft{0.005};
  double user_bytes = 0, inter_site_bytes = 0;
  double facility_kw = 0;
  double carbon_kg = 0;
  std::vector<float> link_util;  // per link, the busier direction
  std::vector<std::array<float, 3>> link_1s;  // per link: p50, p95, p99 of 1-second utilization
  // Per site: GPU-seconds busy running iterations, and GPU-seconds held (powered), in the bucket.
  std::vector<float> site_busy_gpu_s, site_held_gpu_s;
  std::vector<float> site_compute_gpu_s;  // busy GPU-seconds weighted by compute share
};

struct PlanetResult {
  std::uint64_t arrived = 0, completed = 0, rejected = 0, lost = 0;
  std::map<std::string, std::uint64_t> lost_by_reason;
  std::vector<ClassStats> classes;
  std::vector<SiteStats> sites;
  std::vector<LinkStats> links;
  std::vector<std::uint64_t> metro_requests;
  std::vector<double> metro_ttft_sum;
  std::vector<std::uint64_t> metro_met_slo;
  // Arrivals per minute by country group and priority (demand.csv; the forecaster's accuracy,
  // `infergrid forecast`): [group * 3 + priority][minute].
  std::vector<std::string> demand_groups;
  std::vector<std::vector<std::uint32_t>> demand_minutes;
  // The token demand of those arrivals: prompt (with the context retrievals will add) + output.
  std::vector<std::vector<double>> demand_tokens;
  std::vector<Bucket> buckets;
  std::vector<Staleness> staleness;
  std::vector<DeploymentStats> deployments;
  std::vector<SitePowerStats> site_power;
  std::string controller;
  std::uint64_t control_ticks = 0;
  // Each minute, per site with deployments: replicas and power (fleet.csv, the report).
  struct FleetRow {
    double t_s = 0;
    int site = 0, ready = 0, starting = 0, draining = 0, gpus = 0;
    double it_kw = 0, facility_kw = 0, budget_kw = 0, cap = 1;
    // Saturation of the serving replicas: per replica the binding one of KV cache usage and
    // running / max_num_seqs, averaged over the site's ready replicas weighted by accelerators.
    double saturation = 0;
  };
  std::vector<FleetRow> fleet_rows;
  double user_bytes = 0, inter_site_bytes = 0;
  std::map<std::string, double> bytes_by_kind;  // upload, response, retrieval, sync, ...
  double network_energy_j = 0;
  std::uint64_t events = 0, flows = 0, retrievals = 0, retrieval_failures = 0;
  // Continuing turns served away from their conversation's KV: fetched from the peer site, or
  // recomputed there (the fetch would not have been faster).
  std::uint64_t kv_moves = 0, kv_recomputed = 0;
  // Disaggregated deployments (world decode_at): prefills whose KV moved to their decode site, and
  // those decoded where they were prefilled because the decode site was down or cut off.
  std::uint64_t pd_handoffs = 0, pd_local = 0;
  // The offload KV tiers: requests that loaded prefix blocks from host memory or SSD, and the bytes loaded.
  std::uint64_t kv_host_loads = 0;
  double kv_host_bytes = 0;
  // Of those, the loads that read blocks from the local-SSD tier, and the bytes read from it.
  std::uint64_t kv_ssd_loads = 0;
  double kv_ssd_bytes = 0;
  std::uint64_t te_solves = 0;
  double te_solve_ms = 0;
  // Background bulk copies (world bulk:): bytes offered over the run, carried, and still waiting at its end.
  double bulk_offered = 0, bulk_carried = 0, bulk_backlog = 0;
  core::Ns end = 0;
  // The scenario's event window: from its first event to the last one's end plus
  // PlanetConfig::window_recovery_s (an event without a duration: to the end of the run), within
  // the simulated hours; window_end_s <= window_start_s when the run has no scenario events.
  double window_start_s = 0, window_end_s = 0;
};

class PlanetSim {
 public:
  PlanetSim(const world::World& world, const model::Catalog& catalog, const PlanetConfig& cfg);
  ~PlanetSim();
  // Runs the configured hours; `progress(fraction, arrived)` is called now and then.
  PlanetResult run(const std::function<void(double, std::uint64_t)>& progress = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infergrid::twin
