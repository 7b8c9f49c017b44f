#pragma once
// The planet twin (internal to src/twin): PlanetSim::Impl wires five parts, each owning one
// resource with its state and its methods, and runs the loop that dispatches typed events to them:
//   Fleet      planet_fleet.cpp      sites, deployments, replicas through their lifecycle, pools, power
//   Transport  planet_transport.cpp  routes, flows on the network, TE aggregates, site-pair limits
//   Demand     planet_requests.cpp   arrivals, sessions, the life of a request, the routers
//   Scenario   planet_events.cpp     outages, capacity, link cuts, publications
//   Recorder   planet_recorder.cpp   buckets, counters, requests.csv, what monitoring observes
// A part reaches the others and the shared world, config, event queue and result through `sim`.
// planet.cpp keeps the wiring and the loop; planet_control.cpp the control host (observe, apply).
#include "twin/planet.hpp"


#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <array>
#include <chrono>
#include <cstdio>
#include <limits>
#include <queue>
#include <tuple>

#include "control/balancer.hpp"
#include "control/fleet.hpp"
#include "control/site_router.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/perf_model.hpp"
#include "net/flow_network.hpp"
#include "net/fiber.hpp"
#include "net/latency.hpp"
#include "sim/event_queue.hpp"
#include "te/solver.hpp"

namespace infergrid::twin {

using core::Ns;

namespace planet_detail {

// Typed event kinds, one dispatch (PlanetSim::Impl::run): what `target` and `generation` carry.
enum class Ev : std::uint8_t {
  kReplica,   // target: replica; generation: its schedule's generation
  kFlow,      // target: flow; generation: the flow record's generation
  kStep,      // generation: request slot (its next stage is due)
  kArrival,   // the next user request
  kWindow,    // demand re-evaluated
  kScenario,  // generation: 2 x event index (+1: its end)
  kBucket,    // a time-series bucket closes
  kTe,        // generation 0: the periodic solve; 1: a solve asked for by a change
  kLoaded,    // target: replica; generation: its lifecycle generation (weights loaded, warm)
  kControl,   // the controller's period
};
constexpr Ns kWindowNs = 60 * core::kNsPerSec;  // demand is re-evaluated every simulated minute
constexpr Ns kDrainNs = 2 * 3600 * core::kNsPerSec;

// kPdHandoff, kPdTransfer: a disaggregated deployment's request between its prefill and its
// decode (world::Deployment::decode_at; Demand::pd_handoff).
// kHostLoad: its prefix's blocks load from the chosen replica's host-memory KV tier.
enum class Stage : std::uint8_t { kRoute, kUpload, kAtSite, kRetrieval, kKvFetch, kEngine, kPdHandoff, kPdTransfer, kHostLoad };
enum class FlowKind : std::uint8_t { kUpload, kRetrieval, kSync, kWeights, kKv };
// A replica's lifecycle: off -> pulling weights -> loading (and warm-up) -> ready -> draining -> off.
enum class Phase : std::uint8_t { kOff, kPulling, kLoading, kReady, kDraining };
constexpr int kCapSteps = 20;  // power caps are applied in steps of 1/kCapSteps of board power
// Link classes, highest priority first.
constexpr int kClassCritical = 0, kClassInteractive = 1, kClassRetrieval = 2, kClassBatch = 3,
              kClassSync = 4;

inline int user_class(workload::Priority p) {
  switch (p) {
    case workload::Priority::kCritical:
      return kClassCritical;
    case workload::Priority::kInteractive:
      return kClassInteractive;
    case workload::Priority::kBatch:
      return kClassBatch;
  }
  return kClassInteractive;
}

}  // namespace planet_detail
using namespace planet_detail;


struct PlanetSim::Impl {
  struct Deploy {
    int site = 0, model = 0;
    int first = 0, count = 0, up = 0;  // replica slots [first, first + count); up: ready and serving
    bool indexed = false;              // its balancer reads Fleet::load_tree (large deployments)
    std::int64_t outstanding = 0;
    // The fleet (planet_fleet.cpp).
    std::string accel;
    int tp = 1, nominal = 0;       // accelerators per replica (tp, or ep); replicas the world declares
    int tp_attn = 1, ep = 1;       // the engine model's parallelism (world::Deployment)
    double weight_bytes = 0;
    std::shared_ptr<const model::LlmModel> llm;  // copies: the catalog need not outlive the twin
    std::shared_ptr<const model::Accelerator> acc;
    double host_w = 0;  // per accelerator held: the world's fleet.host_w_per_gpu, else the catalog's
    int cap_steps = kCapSteps;      // the cap applied now (min of the controller's and the budget's)
    int set_cap_steps = kCapSteps;  // the controller's
    int budget_cap_steps = kCapSteps;  // the fleet's, to hold the site's budget
    std::array<std::shared_ptr<const model::PerfModel>, kCapSteps + 1> by_cap{};
    double route_weight = 1;
    // Prefill here, decode at that deployment (another site's, same model): world decode_at.
    int decode_site = -1, decode_deploy = -1;
    // The decode step its model's classes allow: their tightest TPOT SLO (50 ms where none has one).
    double slo_step_s = 0.05;
    // The controller's schedule for its replicas (control::Decisions::Schedule).
    double step_target_s = 0, prefill_reserve = 0;
    bool priority = false;
    // For routers: one replica's sustained rate at that step for its model's mix, the batch that
    // takes, and its prefill speed (model::sustained_rate at full power).
    double service_rps = 0, prefill_tok_s = 0;
    int batch_slots = 0;
    int peak_ready = 0, min_cap_steps = kCapSteps;
    int version = 0;             // the model version its replicas roll to (publish with roll: true)
    std::uint64_t rolled = 0;    // replicas started by rolls
    int roll_size = 0;           // replicas a roll keeps
    std::uint64_t starts = 0, stops = 0, refused = 0, routed_window = 0;
    std::uint64_t restarts = 0;  // replicas reloaded after an outage or capacity loss
    std::vector<double> saturation;  // one per minute: mean over its serving replicas (as the site's)
    double prompt_window = 0, output_window = 0;  // tokens asked by the requests routed in the window
    std::map<std::string, std::uint64_t> refused_by;
    double weight_bytes_moved = 0;
    int powered = 0;            // replicas holding accelerators
    Ns powered_since = 0;
    double gpu_s = 0, gpu_s_seen = 0;  // GPU-seconds held; as of the last bucket
    core::QuantileSketch cold_pull{0.005}, cold_load{0.005}, cold_total{0.005};
    double last_cold_s = 0;
  };
  struct Slot {
    Phase phase = Phase::kReady;
    Ns requested = 0, pulled = 0;
    int flow = -1;
    std::uint32_t gen = 0;  // bumped when a start is cancelled: its load event goes stale
    int version = 0;        // the model version it serves
    bool restart = false;   // loading again after its site's outage (weights on local disk)
  };
  struct SitePower {
    double budget_factor = 1;  // scenario power_cap events
    double sum_kw = 0, peak_kw = 0, last_kw = 0;
    std::uint64_t samples = 0, breach_windows = 0, capped_windows = 0;
    std::uint64_t ttft_n = 0;
  };
  struct Req {
    workload::Request req;
    Ns t_arrive = 0, t_enqueue = 0, pending = -1;
    Ns net_ns = 0, retrieval_ns = 0, retry_ns = 0, step_start = 0;
    double one_way_ms = 0;
    double upload_bytes = 0;
    std::uint64_t gid = 0, session = 0;
    int ring_slot = -1;             // its conversation's entry in the metro's ring
    std::int32_t shared_tokens = 0; // prompt tokens shared with the conversation's last turn
    int metro = 0, cls = 0, site = -1, deploy = -1, retrievals_left = 0, attempts = 0;
    int kv_from = -1;       // the site holding its conversation's KV, when routed elsewhere
    bool kv_moved = false;  // that prefix's KV was fetched here (Demand::fetch_kv)
    Stage stage = Stage::kRoute;
    // Disaggregated: 1 while it prefills, 2 from the handoff on; the prefill's first token as the
    // user sees it, when it was first scheduled, its prefix-cache hit, its deployment.
    std::uint8_t pd = 0;
    Ns pd_first_user = 0, pd_first_sched = 0;
    std::int32_t pd_cached = 0;
    int pd_prefill_deploy = -1;
    std::vector<std::uint64_t> pd_hashes;  // its prompt's block hashes, for the decode site's engine
    int load_replica = -1;        // the replica whose host tier it loads from
    std::int32_t load_blocks = 0; // leading blocks it finds there (GPU and host), warmed when loaded
  };
  struct Flow {
    double remaining = 0, rate = 0;
    Ns last = 0;
    FlowKind kind = FlowKind::kUpload;
    int owner = 0, cls = 0, src = -1, dst = -1;
    int agg = -1, path = -1;  // te mode: the aggregate and its path index (-1: unallocated)
    std::uint32_t gen = 0;
    bool alive = false;
    std::vector<int> links;
  };
  // te mode: the flows of one (source site, destination site, class).
  struct Agg {
    int src = 0, dst = 0, cls = 0;
    std::vector<std::vector<int>> paths;  // directed link ids
    std::vector<double> alloc;            // bytes/s per path
    std::vector<std::vector<int>> on_path;
    std::vector<int> unallocated;         // flows started since the last solve, or off every path
    double pending = 0;                   // bytes announced for transfers about to start
    // The last solve gave it all it asked for: its links had room, and its flows run unbounded
    // (work-conserving: what is idle is not held back); only a limited aggregate is bounded.
    bool satisfied = false;
  };
  struct Route {
    std::vector<int> links;  // directed link ids
    double one_way_ms = 0;
    bool ok = false;
  };

  const world::World& w;
  PlanetConfig cfg;
  Ns horizon = 0;
  Ns window_lo = 0, window_hi = 0;  // the scenario's event window (PlanetResult::window_*)
  bool in_window(Ns t) const { return t >= window_lo && t < window_hi; }
  std::vector<std::string> models;
  std::vector<int> class_model;  // [class] -> model
  sim::EventQueue q;
  PlanetResult res;

  // ---- the parts, each owning one resource ---------------------------------------------------
  // The fleet: sites up, deployments and their replicas through their lifecycle, accelerator
  // pools, weights on disk, power and its budgets.
  struct Fleet {
    explicit Fleet(Impl& s) : sim(s) {}
    Impl& sim;
    std::vector<Deploy> deploys;
    std::vector<std::vector<int>> site_deploy;    // [site][model] -> deploy or -1
    std::vector<std::vector<int>> model_deploys;  // [model] -> deploys
    std::vector<engine::Replica> replicas;
    std::vector<int> replica_deploy;
    std::vector<char> replica_up;                 // ready and its site up: takes requests
    std::vector<Ns> scheduled;                    // each replica's pending event
    std::vector<Ns> host_load_free;               // when each replica's host-to-GPU copies are done
    std::vector<std::uint32_t> generation;
    std::vector<double> replica_energy_seen;
    std::vector<double> replica_busy_seen;     // busy seconds as of the last bucket
    std::vector<double> replica_compute_seen;  // compute-weighted busy seconds, likewise
    std::vector<Slot> slots;                      // per replica: its lifecycle
    std::vector<char> site_up;
    std::vector<std::map<std::string, int>> free_accel;  // [site] type -> free count
    std::vector<std::vector<char>> has_weights;   // [site][model]
    std::vector<std::vector<char>> pulling;       // [site][model]: a weight pull in flight
    std::vector<SitePower> site_power;
    std::array<double, 3> shed_level{0, 0, 0};    // per priority; <= 0: never shed

    // A replica's next event (SimGrid's next_event_time), rescheduled when it moved.
    void sync(std::size_t i);
    // The replica's finished requests, handed to the demand.
    void drain(std::size_t i);
    // The site's balancer: the ready replica of the deployment with the fewest outstanding requests
    // (the lowest index among equals). A deployment of PlanetConfig::index_replicas_from replicas or
    // more keeps a min-tree over its slots of (outstanding, slot), a slot not ready counting as
    // kDown, updated wherever a replica's count or readiness changes (reindex), so that the pick
    // reads the root instead of growing with the fleet; a smaller one is scanned. Both give the
    // same pick (Fleet.TheIndexedBalancerPicksWhatTheScanPicks).
    static constexpr int kDown = std::numeric_limits<int>::max();
    int least_loaded_replica(const Deploy& d) const {
      const auto k = static_cast<std::size_t>(d.first);
      if (d.indexed) {
        const auto& t = load_tree[static_cast<std::size_t>(replica_deploy[k])];
        if (t[1].first != kDown) return d.first + t[1].second;
      }
      return d.first + static_cast<int>(*control::least_loaded(
                           static_cast<std::size_t>(d.count), [&](std::size_t i) { return replica_up[k + i] != 0; },
                           [&](std::size_t i) { return replicas[k + i].outstanding(); }));
    }
    // Per indexed deployment: the min-tree, leaves at [size + slot] (size a power of two >= count).
    std::vector<std::vector<std::pair<int, int>>> load_tree;
    // The trees of the deployments of at least `from` replica slots, every replica in its leaf.
    void build_load_trees(int from);
    // After a change to replica i's outstanding requests or readiness: its leaf in load_tree.
    void reindex(std::size_t i);
    void init_fleet(const model::Catalog& catalog);
    std::shared_ptr<const model::PerfModel> model_at(Deploy& d, int steps);
    // Starts one replica of deployment d (pulls weights when its site holds none); false, with the
    // reason counted, when the pool or the power budget refuses.
    bool start_replica(int d, Ns now);
    void begin_load(std::size_t i, Ns now);
    void weights_arrived(int deploy, Ns now);
    void loaded(std::size_t i, Ns now);
    void drain_replica(std::size_t i, Ns now);
    void maybe_off(std::size_t i, Ns now);
    void power_down(std::size_t i, Ns now);
    void set_powered(Deploy& d, int delta, Ns now);
    void scale_to(int d, int n, Ns now);
    void apply_cap(int d, Ns now);
    void apply_schedule(int d, Ns now);
    // A published model version reached `site` (staleness entry k): roll its replicas if asked.
    void synced(std::size_t k, Ns now);
    // One step of a rolling update: start a new-version replica (or, with no room, drain an old one).
    void roll_step(int d, Ns now);
    double site_budget_kw(int site) const;
    double site_facility_kw(int site) const;
    double replica_facility_kw(const Deploy& d, int cap_steps) const;
    // Called before each event at `now`: samples links each second, power each window (and holds
    // budgets), replicas and power each minute, at the boundaries crossed since the last event.
    void fleet_clock(Ns now);
    void power_window_at(Ns t);
    void finish_fleet(Ns end);
  } fleet{*this};

  // The transport: routes, the flow network and its flows, TE aggregates, per-class limits on
  // site pairs, transfers of published artifacts.
  struct Transport {
    explicit Transport(Impl& s) : sim(s) {}
    Impl& sim;
    net::FlowNetwork fn;
    int metro_link0 = 0;
    std::vector<double> link_factor;           // per world link
    std::vector<double> dlink_capacity;        // per directed link, bytes/s (nominal)
    std::vector<double> dlink_bucket_bytes;    // per directed link, this bucket
    // Exact bytes carried per directed DCI link up to any instant between events: settled bytes
    // plus the flows' unsettled progress, sum of rate x (t - last) = t x rate_sum - rate_last_sum
    // (what the 1-second utilization samples difference; planet_fleet.cpp fleet_clock).
    std::vector<double> dlink_settled, dlink_rate_sum, dlink_rate_last_sum, dlink_seen;
    double dlink_bytes_at(int dl, Ns t) const {
      const auto i = static_cast<std::size_t>(dl);
      return dlink_settled[i] + core::to_seconds(t) * dlink_rate_sum[i] - dlink_rate_last_sum[i];
    }
    // A flow's rate changes from `from` to `to` at `now` (its progress settled up to now).
    void rerate_links(const Flow& f, double from, double to, Ns now);
    std::vector<double> user_rtt_ms;           // [metro * S + site]
    std::vector<int> metro_entry;              // the site where a metro's traffic enters the backbone (nearest)
    std::vector<Route> routes;                 // [src * S + dst]
    std::vector<std::vector<int>> shard_holders;
    std::vector<Flow> flows;
    std::vector<int> sync_parts;  // per staleness entry: transfer parts still moving
    std::vector<std::pair<int, int>> sync_of;  // per staleness entry: (event index, site)
    bool te_mode = false, te_dirty = false, te_pending = false;
    Ns te_last = -1;
    std::map<std::tuple<int, int, int>, int> agg_index;
    std::vector<Agg> aggs;
    std::map<std::tuple<int, int, int>, double> pair_limit;   // (src, dst, class) -> bytes/s
    std::map<std::tuple<int, int, int>, std::vector<int>> pair_flows;
    std::map<std::tuple<int, int, int>, double> pair_reserve;  // (src, dst, class) -> bytes/s (te)

    // Lowest-latency routes between all sites over the links still up (Dijkstra from each site).
    void compute_routes();
    double user_rtt(int metro, int site) const {
      return user_rtt_ms[static_cast<std::size_t>(metro) * sim.w.sites.size() + static_cast<std::size_t>(site)];
    }
    const Route& route(int src, int dst) const {
      return routes[static_cast<std::size_t>(src) * sim.w.sites.size() + static_cast<std::size_t>(dst)];
    }
    void count_link_bytes(const std::vector<int>& dlinks, double bytes);
    // A flow in the network and its record (generation kept: stale completions stay stale).
    int new_flow(std::vector<int> dlinks, int cls, double bytes, FlowKind kind, int owner, int src, int dst, int agg,
                 int path, Ns now);
    // te: the aggregate of (src, dst, class), created on first use.
    int agg_for(int src, int dst, int cls);
    int start_flow(std::vector<int> dlinks, int cls, double bytes, FlowKind kind, int owner, int src,
                   int dst, Ns now);
    // te: a flow of aggregate `a` on its path p, bounded to its share of the path's allocation.
    int start_flow_on(Agg& a, int agg, std::size_t p, double bytes, FlowKind kind, int owner, Ns now);
    // Splits a path's allocation equally between the aggregate's flows on it.
    void rebound(Agg& a, int p);
    void request_te(Ns now);
    // The te module's tiered max-min over every aggregate with bytes left.
    void te_solve(Ns now);
    void settle(Flow& f, Ns now);
    // Re-rates the flows the network changed and schedules their completions (SimGrid's
    // update_actions_state after a share change).
    void update_flows(Ns now);
    void end_flow(int id, Ns now);
    // Per-class limits on a site pair: fair mode bounds the pair's flows of the class to equal
    // shares of the limit; te mode caps the aggregate's demand at the next solve.
    void rebound_pair(const std::tuple<int, int, int>& key, Ns now);
  } net{*this};

  // Recent conversations of each metro (a continuing turn picks one): where the last turn ran,
  // its context length and its prompt's block hashes, which the next turn's prefix shares.
  struct SessionRec {
    std::uint64_t session = 0;
    int site = -1, replica = -1;
    std::int32_t context = 0;
    std::vector<std::uint64_t> hashes;
  };
  static constexpr int kHashBlock = 256;  // tokens per prefix-cache hash block
  // The demand: arrival streams, metro rates and surges, sessions, the requests in flight and
  // their life (route, upload, retrieval, engine, answer), the routers and their scratch views.
  struct Demand {
    Demand(Impl& s, std::uint64_t seed)
        : sim(s), rng_arrival(seed, "planet-arrivals"), rng_class(seed, "planet-classes"), rng_len(seed, "planet-lengths"),
          rng_route(seed, "planet-route") {}
    Impl& sim;
    std::vector<Req> reqs;
    std::vector<std::uint32_t> free_reqs;
    std::uint64_t active = 0;
    core::Rng rng_arrival, rng_class, rng_len, rng_route;
    std::unique_ptr<control::SiteRouter> router;
    bool router_needs_detail = false;  // the site views carry waiting, KV usage and prefix hits
    bool router_picks_pods = false;    // the router also picks the replica within the site (llm-d)
    std::vector<control::SiteView> views, pod_views;
    std::vector<int> view_deploy;
    std::vector<double> metro_cum, metro_surge;
    double population = 0;  // of every metro
    double total_rate = 0;
    Ns window_end = 0;
    std::uint64_t next_session = 1;
    std::vector<std::array<SessionRec, 16>> metro_sessions;
    std::vector<std::uint8_t> metro_sessions_n;

    std::uint32_t alloc_req();
    void free_req(std::uint32_t slot);
    void step_at(std::uint32_t slot, Ns t);
    void lose(std::uint32_t slot, const std::string& reason);
    void reject(std::uint32_t slot, const std::string& reason);
    // The request's site failed it: back to the gateway, which notices after retry_detect_ms.
    void retry(std::uint32_t slot, Ns now, const char* reason);
    void arrive(Ns now);
    void route_req(std::uint32_t slot, Ns now);
    // The request is at its site (or back from a retrieval): retrieve, or run.
    void at_site(std::uint32_t slot, Ns now);
    void start_retrieval(std::uint32_t slot, Ns now);
    // A continuing turn routed away from the site holding its conversation's KV: fetch the
    // shared prefix's KV from there when that beats recomputing it (docs/planet.md "KV moves").
    // True: the fetch is under way (the request waits for it).
    bool fetch_kv(std::uint32_t slot, Ns now);
    // `bytes` of KV that the site `to` pulls from `from` for the request: a flow of its class when
    // large enough (its end steps the request one round trip later), else counted on the route and
    // the request stepped after the round trip + bytes over the route's narrowest link.
    void pull_kv(std::uint32_t slot, int from, int to, double bytes, Ns now);
    void step(std::uint32_t slot, Ns now);
    // Disaggregated serving: the prefill is done; its KV moves to the decode site (or the request
    // decodes where it was prefilled, when that site cannot take it); then it joins a replica there.
    void pd_handoff(std::uint32_t slot, Ns now);
    void pd_decode(std::uint32_t slot, int deploy, Ns now);
    // Hands the request to replica `best`: the prefix fetched from a peer or loaded from the host
    // tier enters its cache first; a disaggregated deployment's request prefills only.
    void enqueue_on(std::uint32_t slot, int best, Ns now);
    // A replica finished (or failed) a request.
    void complete(const engine::Completion& c);
    void recompute_demand(Ns t);
    void next_arrival(Ns now);
  } demand{*this, cfg.seed};

  // The scenario: the world's timed events (outage, capacity, link cuts, surges, publications,
  // power caps), each carried out on the part it changes.
  struct Scenario {
    explicit Scenario(Impl& s) : sim(s) {}
    Impl& sim;
    void set_site_capacity(int site, double factor, bool up, Ns now);
    void set_link(int link, double factor, Ns now);
    void publish(const world::Event& e, Ns now);
    // Event `code / 2` of the world begins (even) or ends (odd).
    void scenario(std::uint32_t code, Ns now);
  } scen{*this};

  // The recorder: requests.csv, buckets, the samplers' clocks, and what the control host observed
  // since its last look (what an operator's monitoring counts).
  struct Recorder {
    explicit Recorder(Impl& s) : sim(s) {}
    Impl& sim;
    std::FILE* csv = nullptr;
    std::string csv_buf;
    Bucket bucket;
    Ns bucket_start = 0;
    Ns next_power = 0, next_second = 0, next_minute = 0, power_window = 0;
    std::vector<std::array<std::uint32_t, 101>> link_hist;  // per world link, this bucket: 1-s utilization in %
    std::vector<std::uint64_t> obs_arrivals;                // [country group * 3 + priority]
    std::vector<double> obs_ttft_sum;
    std::vector<std::uint64_t> obs_ttft_n;
    std::vector<int> metro_group;
    std::vector<std::string> groups;
    Ns obs_since = 0;

    void flush_csv(bool close = false);
    // One row; times in ms (empty where the request got no answer).
    void row(const Req& r, const char* status, const std::string& reason, double ttft, double tpot, double e2e,
             double queue, double compute, std::int32_t out_tokens);
    void new_bucket(Ns t);
    void close_bucket(Ns t);
    void count_kind(const char* kind, double bytes, bool inter_site);
  } rec{*this};

  // Background bulk copies (world bulk:, planet_bulk.cpp): per directed DCI link a backlog fed by
  // Poisson copy arrivals and drained, each second the link sampler closes, by what the flows left
  // of that second. Below every class of the flow network (strict priority, as B4 and SWAN carry
  // them), so draining it never slows a flow and it needs no flow of its own.
  struct Bulk {
    Bulk(Impl& s, std::uint64_t seed) : sim(s), rng(seed, "planet-bulk") {}
    Impl& sim;
    core::Rng rng;
    double copy_bytes = 0;                     // a copy's mean size (world bulk.copy_gb / scale)
    std::vector<double> rate, next_s, backlog;  // per directed link: copies/s, next arrival s, bytes waiting
    bool on = false;
    void init();
    // The second ending at t_s on directed link dl, whose flows carried `carried` of the `cap`
    // bytes it could; returns the bulk bytes it moved in what was left (and counts them).
    double second(int dl, double t_s, double carried, double cap);
    void finish();
  } bulk{*this, cfg.seed};

  std::shared_ptr<control::Controller> controller;

  Impl(const world::World& world, const model::Catalog& catalog, const PlanetConfig& c);
  ~Impl() { rec.flush_csv(true); }

  // The one dispatch of a finished flow to what it carried (a request's bytes, weights, a sync).
  void flow_done(int id, Ns now);
  // ---- the control host (planet_control.cpp) ---------------------------------------------------
  void control_tick(Ns now);
  control::FleetView observe(Ns now);
  void apply(const control::Decisions& d, Ns now);
  PlanetResult run(const std::function<void(double, std::uint64_t)>& progress);
};

}  // namespace infergrid::twin
