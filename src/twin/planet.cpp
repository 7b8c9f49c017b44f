#include "twin/planet.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <queue>
#include <tuple>

#include "control/site_router.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/perf_model.hpp"
#include "net/flow_network.hpp"
#include "net/latency.hpp"
#include "sim/event_queue.hpp"
#include "te/solver.hpp"

namespace infergrid::twin {

using core::Ns;

namespace {

constexpr std::int32_t kArrival = -1, kStep = -2, kWindow = -3, kScenario = -4, kBucket = -5, kTe = -6;
constexpr std::int32_t kFlowBase = -1000;  // a flow's event targets kFlowBase - flow id
constexpr Ns kWindowNs = 60 * core::kNsPerSec;  // demand is re-evaluated every simulated minute
constexpr Ns kDrainNs = 2 * 3600 * core::kNsPerSec;

enum class Stage : std::uint8_t { kRoute, kUpload, kAtSite, kRetrieval, kEngine };
enum class FlowKind : std::uint8_t { kUpload, kRetrieval, kSync };
// Link classes, highest priority first.
constexpr int kClassCritical = 0, kClassInteractive = 1, kClassRetrieval = 2, kClassBatch = 3,
              kClassSync = 4;

int user_class(workload::Priority p) {
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

}  // namespace

struct PlanetSim::Impl {
  struct Deploy {
    int site = 0, model = 0;
    int first = 0, count = 0, up = 0;
    std::int64_t outstanding = 0;
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
    Stage stage = Stage::kRoute;
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
  };
  struct Route {
    std::vector<int> links;  // directed link ids
    double one_way_ms = 0;
    bool ok = false;
  };

  const world::World& w;
  PlanetConfig cfg;
  Ns horizon = 0;
  std::vector<std::string> models;
  std::vector<Deploy> deploys;
  std::vector<std::vector<int>> site_deploy;    // [site][model] -> deploy or -1
  std::vector<std::vector<int>> model_deploys;  // [model] -> deploys
  std::vector<int> class_model;
  std::vector<engine::Replica> replicas;
  std::vector<int> replica_deploy;
  std::vector<char> replica_up;
  std::vector<Ns> scheduled;
  std::vector<std::uint32_t> generation;
  std::vector<double> replica_energy_seen;
  std::vector<char> site_up;

  net::FlowNetwork fn;
  int metro_link0 = 0;
  std::vector<double> link_factor;           // per world link
  std::vector<double> dlink_capacity;        // per directed link, bytes/s (nominal)
  std::vector<double> dlink_bucket_bytes;    // per directed link, this bucket
  std::vector<double> user_rtt_ms;           // [metro * S + site]
  std::vector<Route> routes;                 // [src * S + dst]
  std::vector<std::vector<int>> shard_holders;
  std::vector<Flow> flows;
  std::vector<int> sync_parts;  // per staleness entry: transfer parts still moving
  bool te_mode = false, te_dirty = false, te_pending = false;
  Ns te_last = -1;
  std::map<std::tuple<int, int, int>, int> agg_index;
  std::vector<Agg> aggs;

  std::vector<Req> reqs;
  std::vector<std::uint32_t> free_reqs;
  std::uint64_t active = 0;

  core::Rng rng_arrival, rng_class, rng_len, rng_route;
  std::unique_ptr<control::SiteRouter> router;
  bool router_needs_detail = false;
  std::vector<control::SiteView> views;
  std::vector<int> view_deploy;
  std::vector<double> metro_cum, metro_surge;
  double population = 0;  // of every metro
  double total_rate = 0;
  Ns window_end = 0;
  std::uint64_t next_session = 1;
  // Recent conversations of each metro (a continuing turn picks one): where the last turn ran,
  // its context length and its prompt's block hashes, which the next turn's prefix shares.
  struct SessionRec {
    std::uint64_t session = 0;
    int site = -1, replica = -1;
    std::int32_t context = 0;
    std::vector<std::uint64_t> hashes;
  };
  std::vector<control::SiteView> pod_views;
  static constexpr int kHashBlock = 256;  // tokens per prefix-cache hash block
  std::vector<std::array<SessionRec, 16>> metro_sessions;
  std::vector<std::uint8_t> metro_sessions_n;

  sim::EventQueue q;
  PlanetResult res;
  std::FILE* csv = nullptr;
  std::string csv_buf;
  Bucket bucket;
  Ns bucket_start = 0;

  Impl(const world::World& world, const model::Catalog& catalog, const PlanetConfig& c)
      : w(world),
        cfg(c),
        rng_arrival(c.seed, "planet-arrivals"),
        rng_class(c.seed, "planet-classes"),
        rng_len(c.seed, "planet-lengths"),
        rng_route(c.seed, "planet-route") {
    cfg.engine.enable_prefix_caching = cfg.prefix_caching;
    cfg.engine.validate();
    if (!(cfg.hours > 0 && cfg.hours <= 24 * 365)) core::fail_flag("hours", "must be in (0, 8760]");
    if (!(cfg.scale > 0)) core::fail_flag("scale", "must be positive");
    if (cfg.max_attempts < 1) core::fail_flag("max-attempts", "must be at least 1");
    horizon = core::from_seconds(cfg.hours * 3600);
    router = control::make_site_router(cfg.router, cfg.seed);
    if (cfg.bandwidth != "fair" && cfg.bandwidth != "te") core::fail_flag("bandwidth", "must be fair or te");
    te_mode = cfg.bandwidth == "te";
    if (te_mode && !(cfg.te_interval_s > 0 && cfg.te_horizon_s > 0 && cfg.te_paths >= 1))
      core::fail_flag("bandwidth", "te needs a positive interval, horizon and path count");
    router_needs_detail = cfg.router == "llm-d";
    const std::size_t S = w.sites.size();
    // Models and deployments.
    auto model_index = [&](const std::string& m) {
      for (std::size_t i = 0; i < models.size(); ++i)
        if (models[i] == m) return static_cast<int>(i);
      models.push_back(m);
      return static_cast<int>(models.size() - 1);
    };
    for (const auto& cl : w.workload.classes) class_model.push_back(model_index(cl.model));
    site_deploy.assign(S, {});
    for (std::size_t s = 0; s < S; ++s) {
      for (const auto& d : w.sites[s].deployments) {
        const int m = model_index(d.model);
        if (site_deploy[s].size() < models.size()) site_deploy[s].resize(models.size(), -1);
        if (d.replicas == 0) continue;
        if (site_deploy[s][static_cast<std::size_t>(m)] >= 0)
          core::fail_input(w.file, 0, "deployments",
                           fmt::format("site '{}' deploys '{}' twice", w.sites[s].id, d.model));
        auto pm = std::make_shared<model::PerfModel>(catalog.llm(d.model), catalog.accelerator(d.accelerator), d.tp);
        const auto kv = cfg.engine.kv_capacity_tokens > 0
                            ? cfg.engine.kv_capacity_tokens
                            : static_cast<std::int64_t>(pm->kv_capacity_tokens(cfg.engine.gpu_memory_utilization));
        Deploy dep;
        dep.site = static_cast<int>(s);
        dep.model = m;
        dep.first = static_cast<int>(replicas.size());
        dep.count = d.replicas;
        dep.up = d.replicas;
        for (int r = 0; r < d.replicas; ++r) {
          replicas.emplace_back(static_cast<int>(replicas.size()), pm, cfg.engine, kv);
          replica_deploy.push_back(static_cast<int>(deploys.size()));
        }
        site_deploy[s][static_cast<std::size_t>(m)] = static_cast<int>(deploys.size());
        deploys.push_back(dep);
      }
    }
    for (auto& v : site_deploy) v.resize(models.size(), -1);
    model_deploys.assign(models.size(), {});
    for (std::size_t d = 0; d < deploys.size(); ++d)
      model_deploys[static_cast<std::size_t>(deploys[d].model)].push_back(static_cast<int>(d));
    replica_up.assign(replicas.size(), 1);
    scheduled.assign(replicas.size(), core::kNever);
    generation.assign(replicas.size(), 0);
    replica_energy_seen.assign(replicas.size(), 0);
    site_up.assign(S, 1);

    // The network: two directed links per DCI link, then one access link per metro.
    for (const auto& l : w.links) {
      fn.add_link(l.gbps * 1e9 / 8);
      fn.add_link(l.gbps * 1e9 / 8);
      dlink_capacity.push_back(l.gbps * 1e9 / 8);
      dlink_capacity.push_back(l.gbps * 1e9 / 8);
    }
    link_factor.assign(w.links.size(), 1.0);
    metro_link0 = static_cast<int>(fn.link_count());
    for (const auto& m : w.metros) fn.add_link(m.uplink_gbps * 1e9 / 8);
    dlink_bucket_bytes.assign(2 * w.links.size(), 0);
    const net::RttModel rtt{w.route_factor, net::RttModel::calibrated().fixed_ms};
    user_rtt_ms.resize(w.metros.size() * S);
    for (std::size_t m = 0; m < w.metros.size(); ++m)
      for (std::size_t s = 0; s < S; ++s)
        user_rtt_ms[m * S + s] = w.metros[m].last_mile_ms + rtt.rtt_ms(w.metros[m].pos, w.sites[s].pos);
    compute_routes();
    // Corpus shards and their holders.
    std::map<std::string, std::vector<int>> holders;
    for (std::size_t s = 0; s < S; ++s)
      for (const auto& sh : w.sites[s].shards) holders[sh].push_back(static_cast<int>(s));
    for (auto& [_, v] : holders) shard_holders.push_back(v);

    for (const auto& m : w.metros) population += m.population;
    metro_surge.assign(w.metros.size(), 1.0);
    metro_cum.assign(w.metros.size(), 0);
    metro_sessions.assign(w.metros.size(), {});
    metro_sessions_n.assign(w.metros.size(), 0);
    res.classes.resize(w.workload.classes.size());
    res.sites.resize(S);
    res.links.resize(w.links.size());
    res.metro_requests.assign(w.metros.size(), 0);
    res.metro_ttft_sum.assign(w.metros.size(), 0);
    res.metro_met_slo.assign(w.metros.size(), 0);
    new_bucket(0);
    if (!cfg.requests_csv.empty()) {
      csv = std::fopen(cfg.requests_csv.c_str(), "wb");
      if (!csv) core::fail_input(cfg.requests_csv, 0, "", "cannot write");
      csv_buf = "id,metro,class,site,status,reason,attempts,arrival_s,ttft_ms,tpot_ms,e2e_ms,network_ms,retrieval_ms,"
                "queue_ms,compute_ms,prompt_tokens,output_tokens\n";
    }
  }
  ~Impl() { flush_csv(true); }

  void flush_csv(bool close = false) {
    if (!csv) return;
    std::fwrite(csv_buf.data(), 1, csv_buf.size(), csv);
    csv_buf.clear();
    if (close) {
      std::fclose(csv);
      csv = nullptr;
    }
  }
  // One row; times in ms (empty where the request got no answer).
  void row(const Req& r, const char* status, const std::string& reason, double ttft, double tpot, double e2e,
           double queue, double compute, std::int32_t out_tokens) {
    if (!csv) return;
    const auto num = [](double v) { return v < 0 ? std::string() : fmt::format("{:.3f}", v); };
    csv_buf += fmt::format("{},\"{}\",{},{},{},{},{},{:.6f},{},{},{},{:.3f},{:.3f},{},{},{},{}\n", r.gid,
                           w.metros[static_cast<std::size_t>(r.metro)].name,
                           w.workload.classes[static_cast<std::size_t>(r.cls)].name,
                           r.site >= 0 ? w.sites[static_cast<std::size_t>(r.site)].id : "", status, reason, r.attempts,
                           core::to_seconds(r.t_arrive), num(ttft), num(tpot), num(e2e),
                           core::to_ms(r.net_ns) + (ttft >= 0 ? r.one_way_ms : 0), core::to_ms(r.retrieval_ns),
                           num(queue), num(compute), r.req.prompt_tokens, out_tokens);
    if (csv_buf.size() > (1 << 20)) flush_csv();
  }

  // Lowest-latency routes between all sites over the links still up (Dijkstra from each site).
  void compute_routes() {
    const std::size_t S = w.sites.size();
    std::vector<std::vector<std::pair<int, int>>> adj(S);  // (neighbor, directed link)
    for (std::size_t l = 0; l < w.links.size(); ++l) {
      if (link_factor[l] <= 0) continue;
      adj[static_cast<std::size_t>(w.links[l].a)].push_back({w.links[l].b, static_cast<int>(2 * l)});
      adj[static_cast<std::size_t>(w.links[l].b)].push_back({w.links[l].a, static_cast<int>(2 * l + 1)});
    }
    routes.assign(S * S, {});
    std::vector<double> dist(S);
    std::vector<int> via(S);
    for (std::size_t src = 0; src < S; ++src) {
      std::fill(dist.begin(), dist.end(), 1e300);
      std::fill(via.begin(), via.end(), -1);
      using Item = std::pair<double, int>;
      std::priority_queue<Item, std::vector<Item>, std::greater<>> pq;
      dist[src] = 0;
      pq.push({0, static_cast<int>(src)});
      while (!pq.empty()) {
        const auto [d, u] = pq.top();
        pq.pop();
        if (d > dist[static_cast<std::size_t>(u)]) continue;
        for (const auto& [v, dl] : adj[static_cast<std::size_t>(u)]) {
          const double nd = d + w.links[static_cast<std::size_t>(dl / 2)].km * net::RttModel::kFiberMsPerKm + w.per_hop_ms;
          if (nd < dist[static_cast<std::size_t>(v)]) {
            dist[static_cast<std::size_t>(v)] = nd;
            via[static_cast<std::size_t>(v)] = dl;
            pq.push({nd, v});
          }
        }
      }
      for (std::size_t dst = 0; dst < S; ++dst) {
        Route& r = routes[src * S + dst];
        if (dst == src) {
          r.ok = true;
          continue;
        }
        if (dist[dst] >= 1e300) continue;
        r.ok = true;
        r.one_way_ms = dist[dst];
        for (int v = static_cast<int>(dst); v != static_cast<int>(src);) {
          const int dl = via[static_cast<std::size_t>(v)];
          r.links.push_back(dl);
          const auto& lk = w.links[static_cast<std::size_t>(dl / 2)];
          v = (dl % 2 == 0) ? lk.a : lk.b;
        }
        std::reverse(r.links.begin(), r.links.end());
      }
    }
  }
  const Route& route(int src, int dst) const {
    return routes[static_cast<std::size_t>(src) * w.sites.size() + static_cast<std::size_t>(dst)];
  }

  // ---- buckets (time series) ------------------------------------------------------------------
  void new_bucket(Ns t) {
    bucket = Bucket{};
    bucket.t_s = core::to_seconds(t);
    bucket.arrivals.assign(w.workload.classes.size(), 0);
    bucket_start = t;
  }
  void close_bucket(Ns t) {
    const double dt = std::max(1e-9, core::to_seconds(t - bucket_start));
    std::vector<double> site_j(w.sites.size(), 0);
    for (std::size_t r = 0; r < replicas.size(); ++r) {
      if (replica_up[r]) replicas[r].finish(t);  // idle energy up to now
      const double e = replicas[r].stats().energy_j;
      site_j[static_cast<std::size_t>(deploys[static_cast<std::size_t>(replica_deploy[r])].site)] += e - replica_energy_seen[r];
      replica_energy_seen[r] = e;
    }
    for (std::size_t s = 0; s < w.sites.size(); ++s) {
      const double kw = site_j[s] * w.sites[s].pue / dt / 1000;
      bucket.facility_kw += kw;
      bucket.carbon_kg += site_j[s] * w.sites[s].pue / 3.6e6 * w.sites[s].carbon_g_per_kwh / 1000;
      auto& st = res.sites[s];
      st.peak_kw = std::max(st.peak_kw, kw);
      if (w.sites[s].power_cap_kw > 0 && kw > w.sites[s].power_cap_kw) ++st.buckets_over_cap;
    }
    bucket.link_util.assign(w.links.size(), 0);
    for (std::size_t l = 0; l < w.links.size(); ++l) {
      const double ua = dlink_bucket_bytes[2 * l] / (dlink_capacity[2 * l] * dt);
      const double ub = dlink_bucket_bytes[2 * l + 1] / (dlink_capacity[2 * l + 1] * dt);
      bucket.link_util[l] = static_cast<float>(std::max(ua, ub));
      res.links[l].peak_util = std::max(res.links[l].peak_util, std::max(ua, ub));
      dlink_bucket_bytes[2 * l] = dlink_bucket_bytes[2 * l + 1] = 0;
    }
    res.buckets.push_back(std::move(bucket));
    new_bucket(t);
  }

  // ---- bytes on links ---------------------------------------------------------------------------
  void count_link_bytes(const std::vector<int>& dlinks, double bytes) {
    for (int dl : dlinks) {
      if (dl >= metro_link0) continue;
      dlink_bucket_bytes[static_cast<std::size_t>(dl)] += bytes;
      auto& ls = res.links[static_cast<std::size_t>(dl / 2)];
      (dl % 2 == 0 ? ls.bytes_ab : ls.bytes_ba) += bytes;
    }
  }
  void count_kind(const char* kind, double bytes, bool inter_site) {
    res.bytes_by_kind[kind] += bytes;
    if (inter_site) {
      res.inter_site_bytes += bytes;
      bucket.inter_site_bytes += bytes;
    } else {
      res.user_bytes += bytes;
      bucket.user_bytes += bytes;
    }
  }

  // ---- flows ------------------------------------------------------------------------------------
  // A flow in the network and its record (generation kept: stale completions stay stale).
  int new_flow(std::vector<int> dlinks, int cls, double bytes, FlowKind kind, int owner, int src, int dst, int agg,
               int path, Ns now) {
    const int id = fn.start_flow(dlinks, cls);
    if (static_cast<std::size_t>(id) >= flows.size()) flows.resize(static_cast<std::size_t>(id) + 1);
    Flow& f = flows[static_cast<std::size_t>(id)];
    const std::uint32_t gen = f.gen + 1;
    f = Flow{};
    f.gen = gen;
    f.remaining = bytes;
    f.last = now;
    f.kind = kind;
    f.owner = owner;
    f.cls = cls;
    f.src = src;
    f.dst = dst;
    f.alive = true;
    f.links = std::move(dlinks);
    f.agg = agg;
    f.path = path;
    ++res.flows;
    return id;
  }

  // te: the aggregate of (src, dst, class), created on first use.
  int agg_for(int src, int dst, int cls) {
    const auto [it, fresh] = agg_index.try_emplace(std::make_tuple(src, dst, cls), static_cast<int>(aggs.size()));
    if (fresh) aggs.push_back(Agg{src, dst, cls, {}, {}, {}, {}, 0});
    return it->second;
  }

  int start_flow(std::vector<int> dlinks, int cls, double bytes, FlowKind kind, int owner, int src,
                 int dst, Ns now) {
    int agg = -1, path = -1;
    if (te_mode && src >= 0 && src != dst) {
      agg = agg_for(src, dst, cls);
      const Agg& a = aggs[static_cast<std::size_t>(agg)];
      double best = 0;
      for (std::size_t p = 0; p < a.paths.size(); ++p) {
        const bool cut = std::any_of(a.paths[p].begin(), a.paths[p].end(),
                                     [&](int dl) { return link_factor[static_cast<std::size_t>(dl / 2)] <= 0; });
        if (cut) continue;
        const double share = a.alloc[p] / static_cast<double>(a.on_path[p].size() + 1);
        if (share > best) best = share, path = static_cast<int>(p);
      }
      if (path >= 0) dlinks = a.paths[static_cast<std::size_t>(path)];
      else request_te(now);  // a demand the last solve did not see
    }
    const int id = new_flow(std::move(dlinks), cls, bytes, kind, owner, src, dst, agg, path, now);
    if (agg >= 0) {
      Agg& a = aggs[static_cast<std::size_t>(agg)];
      if (path >= 0) {
        a.on_path[static_cast<std::size_t>(path)].push_back(id);
        rebound(a, path);
      } else {
        a.unallocated.push_back(id);
      }
    }
    return id;
  }
  // Splits a path's allocation equally between the aggregate's flows on it.
  void rebound(Agg& a, int p) {
    const auto& v = a.on_path[static_cast<std::size_t>(p)];
    if (v.empty()) return;
    const double b = std::max(1.0, a.alloc[static_cast<std::size_t>(p)] / static_cast<double>(v.size()));
    for (int f : v) fn.set_bound(f, b);
  }
  void request_te(Ns now) {
    te_dirty = true;
    if (te_pending) return;
    te_pending = true;
    // At most one solve per simulated second on demand; the periodic one comes anyway.
    q.push(std::max(now, te_last + core::kNsPerSec), kTe, 1);
  }
  // The te module's tiered max-min over every aggregate with bytes left.
  void te_solve(Ns now) {
    te_pending = false;
    te_dirty = false;
    te_last = now;
    te::Graph g;
    for (std::size_t s = 0; s < w.sites.size(); ++s) {
      te::Node n;
      n.id = static_cast<std::int64_t>(s);
      n.name = w.sites[s].id;
      g.nodes.push_back(n);
    }
    std::vector<int> te_to_dl;
    for (std::size_t l = 0; l < w.links.size(); ++l) {
      if (link_factor[l] <= 0) continue;
      // In GB/s (te scales any units, but its answers read better in these).
      const double cap = w.links[l].gbps / 8 * link_factor[l];
      const double lat = w.links[l].km * net::RttModel::kFiberMsPerKm + w.per_hop_ms;
      g.links.push_back({w.links[l].a, w.links[l].b, cap, lat});
      te_to_dl.push_back(static_cast<int>(2 * l));
      g.links.push_back({w.links[l].b, w.links[l].a, cap, lat});
      te_to_dl.push_back(static_cast<int>(2 * l + 1));
    }
    g.rebuild_adjacency();
    te::Problem p;
    p.graph = &g;
    std::vector<int> agg_of;
    for (std::size_t k = 0; k < aggs.size(); ++k) {
      Agg& a = aggs[k];
      double left = 0;
      auto add = [&](int f) {
        Flow& fl = flows[static_cast<std::size_t>(f)];
        settle(fl, now);
        left += fl.remaining;
      };
      for (auto& v : a.on_path) for (int f : v) add(f);
      for (int f : a.unallocated) add(f);
      left += a.pending;
      if (left <= 0) continue;
      auto paths = te::k_shortest_paths(g, a.src, a.dst, cfg.te_paths);
      if (paths.empty()) continue;
      p.demands.push_back({a.src, a.dst, left / cfg.te_horizon_s / 1e9, a.cls});
      p.paths.push_back(std::move(paths));
      agg_of.push_back(static_cast<int>(k));
    }
    if (p.demands.empty()) return;
    const auto t0 = std::chrono::steady_clock::now();
    const te::Allocation alloc = te::solve_fast(p, te::Objective::kMaxMin);
    res.te_solve_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ++res.te_solves;
    for (std::size_t d = 0; d < p.demands.size(); ++d) {
      Agg& a = aggs[static_cast<std::size_t>(agg_of[d])];
      std::vector<int> flows_of;
      for (auto& v : a.on_path) flows_of.insert(flows_of.end(), v.begin(), v.end());
      flows_of.insert(flows_of.end(), a.unallocated.begin(), a.unallocated.end());
      a.paths.clear();
      for (const auto& path : p.paths[d]) {
        std::vector<int> dl;
        for (int l : path) dl.push_back(te_to_dl[static_cast<std::size_t>(l)]);
        a.paths.push_back(std::move(dl));
      }
      a.alloc = alloc.flow[d];
      for (double& x : a.alloc) x *= 1e9;  // back to bytes/s
      a.on_path.assign(a.paths.size(), {});
      a.unallocated.clear();
      // Flows keep their links; those on an allocated path are bounded to its share, the others
      // (their path no longer chosen) run unbounded until they end.
      for (int f : flows_of) {
        Flow& fl = flows[static_cast<std::size_t>(f)];
        fl.path = -1;
        for (std::size_t k = 0; k < a.paths.size(); ++k)
          if (a.alloc[k] > 0 && a.paths[k] == fl.links) fl.path = static_cast<int>(k);
        if (fl.path >= 0) {
          a.on_path[static_cast<std::size_t>(fl.path)].push_back(f);
        } else {
          a.unallocated.push_back(f);
          fn.set_bound(f, net::FlowNetwork::kUnbounded);
        }
      }
      for (std::size_t k = 0; k < a.paths.size(); ++k) rebound(a, static_cast<int>(k));
    }
  }
  void settle(Flow& f, Ns now) {
    const double moved = std::min(f.remaining, f.rate * core::to_seconds(now - f.last));
    if (moved > 0) {
      f.remaining -= moved;
      count_link_bytes(f.links, moved);
    }
    f.last = now;
  }
  void update_flows(Ns now) {
    fn.update();
    for (int id : fn.rerated()) {
      Flow& f = flows[static_cast<std::size_t>(id)];
      settle(f, now);
      f.rate = fn.rate(id);
      ++f.gen;
      if (f.rate > 0) {
        const Ns done = now + std::max<Ns>(1, core::from_seconds(f.remaining / f.rate));
        q.push(done, kFlowBase - id, f.gen);
      }
    }
  }
  void end_flow(int id, Ns now) {
    Flow& f = flows[static_cast<std::size_t>(id)];
    settle(f, now);
    if (f.remaining > 0) count_link_bytes(f.links, f.remaining);  // rounding of the last ns
    f.alive = false;
    ++f.gen;
    fn.end_flow(id);
    if (f.agg >= 0) {
      Agg& a = aggs[static_cast<std::size_t>(f.agg)];
      auto drop = [id](std::vector<int>& v) {
        if (auto it = std::find(v.begin(), v.end(), id); it != v.end()) v.erase(it);
      };
      if (f.path >= 0 && static_cast<std::size_t>(f.path) < a.on_path.size()) {
        drop(a.on_path[static_cast<std::size_t>(f.path)]);
        rebound(a, f.path);
      } else {
        drop(a.unallocated);
      }
      f.agg = -1;
    }
  }

  // ---- requests ---------------------------------------------------------------------------------
  std::uint32_t alloc_req() {
    ++active;
    if (!free_reqs.empty()) {
      const auto i = free_reqs.back();
      free_reqs.pop_back();
      return i;
    }
    reqs.emplace_back();
    return static_cast<std::uint32_t>(reqs.size() - 1);
  }
  void free_req(std::uint32_t slot) {
    reqs[slot].req.block_hashes = {};
    reqs[slot].pending = -1;
    free_reqs.push_back(slot);
    --active;
  }
  void step_at(std::uint32_t slot, Ns t) {
    reqs[slot].pending = t;
    q.push(t, kStep, slot);
  }

  void lose(std::uint32_t slot, const std::string& reason) {
    Req& r = reqs[slot];
    row(r, "lost", reason, -1, -1, -1, -1, -1, 0);
    ++res.lost;
    ++res.lost_by_reason[reason];
    ++res.classes[static_cast<std::size_t>(r.cls)].lost;
    ++bucket.lost;
    free_req(slot);
  }

  // The request's site failed it: back to the gateway, which notices after retry_detect_ms.
  void retry(std::uint32_t slot, Ns now, const char* reason) {
    Req& r = reqs[slot];
    if (r.deploy >= 0) --deploys[static_cast<std::size_t>(r.deploy)].outstanding;
    r.deploy = -1;
    ++r.attempts;
    ++res.classes[static_cast<std::size_t>(r.cls)].retried;
    if (r.attempts >= cfg.max_attempts) {
      lose(slot, reason);
      return;
    }
    r.stage = Stage::kRoute;
    const Ns t = now + core::from_seconds(cfg.retry_detect_ms / 1000);
    r.retry_ns += t - now;
    step_at(slot, t);
  }

  void arrive(Ns now) {
    const double u = rng_arrival.uniform() * total_rate;
    const auto m = static_cast<int>(std::upper_bound(metro_cum.begin(), metro_cum.end(), u) - metro_cum.begin());
    const int metro = std::min<int>(m, static_cast<int>(w.metros.size()) - 1);
    const auto& classes = w.workload.classes;
    double cu = rng_class.uniform(), acc = 0;
    int cls = static_cast<int>(classes.size()) - 1;
    for (std::size_t c = 0; c < classes.size(); ++c) {
      acc += classes[c].share;
      if (cu < acc) {
        cls = static_cast<int>(c);
        break;
      }
    }
    const auto& tc = classes[static_cast<std::size_t>(cls)];
    const std::uint32_t slot = alloc_req();
    Req& r = reqs[slot];
    r = Req{};
    r.gid = res.arrived++;
    r.metro = metro;
    r.cls = cls;
    r.t_arrive = now;
    r.req.id = slot;
    r.req.priority = tc.priority;
    std::int64_t prompt = std::max(1, tc.prompt.sample(rng_len));
    r.req.output_tokens = std::max(1, tc.output.sample(rng_len));
    double bytes = 4.0 * static_cast<double>(prompt) + 1000;  // text and the HTTP request around it
    if (tc.images.mean() > 0) {
      const int n = tc.images.sample(rng_len);
      prompt += static_cast<std::int64_t>(n * tc.tokens_per_image);
      bytes += n * tc.mb_per_image * 1e6;
    }
    if (tc.audio_fraction > 0 && rng_len.uniform() < tc.audio_fraction) {
      prompt += static_cast<std::int64_t>(tc.audio_tokens);
      bytes += tc.audio_mb * 1e6;
    }
    if (tc.video_fraction > 0 && rng_len.uniform() < tc.video_fraction) {
      prompt += static_cast<std::int64_t>(tc.video_tokens);
      bytes += tc.video_mb * 1e6;
    }
    r.req.prompt_tokens = static_cast<std::int32_t>(std::min<std::int64_t>(prompt, 1'000'000));
    r.upload_bytes = bytes;
    r.retrievals_left = tc.retrievals.mean() > 0 ? tc.retrievals.sample(rng_len) : 0;
    // Conversations: a continuing turn picks a recent conversation of the same metro; its prompt
    // shares the last turn's context (up to its own length) as a prefix, block for block, so the
    // engines' prefix caches hit where that turn ran. New content gets new block hashes.
    auto& ring = metro_sessions[static_cast<std::size_t>(metro)];
    auto& n = metro_sessions_n[static_cast<std::size_t>(metro)];
    if (tc.session_continue > 0) {
      std::size_t shared_blocks = 0;
      if (n > 0 && rng_len.uniform() < tc.session_continue) {
        r.ring_slot = static_cast<int>(rng_len.below(std::min<std::uint64_t>(n, ring.size())));
        const SessionRec& sr = ring[static_cast<std::size_t>(r.ring_slot)];
        r.session = sr.session;
        const auto shared = std::min<std::int64_t>(sr.context, r.req.prompt_tokens - 1);
        shared_blocks = std::min<std::size_t>(static_cast<std::size_t>(std::max<std::int64_t>(0, shared)) / kHashBlock,
                                              sr.hashes.size());
        r.req.block_hashes.assign(sr.hashes.begin(), sr.hashes.begin() + static_cast<std::ptrdiff_t>(shared_blocks));
      } else {
        r.session = next_session++;
        r.ring_slot = static_cast<int>(n % ring.size());
        ring[static_cast<std::size_t>(r.ring_slot)] = SessionRec{r.session, -1, -1, 0, {}};
        n = static_cast<std::uint8_t>(std::min<int>(n + 1, 255));
      }
      const auto blocks = static_cast<std::size_t>(r.req.prompt_tokens / kHashBlock);
      std::uint64_t h = r.req.block_hashes.empty() ? r.session * 0x9E3779B97F4A7C15ULL : r.req.block_hashes.back();
      for (std::size_t b = shared_blocks; b < blocks; ++b) {  // prefix-chained, unique to this turn
        h = (h ^ (r.gid + 1) * 0xBF58476D1CE4E5B9ULL ^ b) * 0x94D049BB133111EBULL;
        h ^= h >> 31;
        r.req.block_hashes.push_back(h);
      }
      r.req.hash_block_tokens = kHashBlock;
      r.shared_tokens = static_cast<std::int32_t>(shared_blocks * kHashBlock);
      SessionRec& sr = ring[static_cast<std::size_t>(r.ring_slot)];
      sr.hashes = r.req.block_hashes;
      sr.context = static_cast<std::int32_t>(std::min<std::int64_t>(
          std::int64_t{r.req.prompt_tokens} + r.req.output_tokens, 1'000'000));
    } else {
      r.session = next_session++;
    }
    ++res.classes[static_cast<std::size_t>(cls)].arrived;
    ++bucket.arrivals[static_cast<std::size_t>(cls)];
    ++res.metro_requests[static_cast<std::size_t>(metro)];
    route_req(slot, now);
  }

  void route_req(std::uint32_t slot, Ns now) {
    Req& r = reqs[slot];
    const int model = class_model[static_cast<std::size_t>(r.cls)];
    const std::size_t S = w.sites.size();
    views.clear();
    view_deploy.clear();
    for (int d : model_deploys[static_cast<std::size_t>(model)]) {
      const Deploy& dep = deploys[static_cast<std::size_t>(d)];
      if (!site_up[static_cast<std::size_t>(dep.site)] || dep.up == 0) continue;
      control::SiteView v;
      v.site = dep.site;
      v.rtt_ms = user_rtt_ms[static_cast<std::size_t>(r.metro) * S + static_cast<std::size_t>(dep.site)];
      v.outstanding = static_cast<int>(dep.outstanding);
      v.replicas = dep.up;
      if (router_needs_detail) {
        double kv = 0;
        int waiting = 0;
        for (int i = dep.first; i < dep.first + dep.count; ++i)
          if (replica_up[static_cast<std::size_t>(i)]) {
            kv += replicas[static_cast<std::size_t>(i)].kv_usage();
            waiting += replicas[static_cast<std::size_t>(i)].waiting();
          }
        v.kv_usage = kv / dep.up;
        v.waiting = waiting;
        v.prefix_hit = 0;
        if (r.ring_slot >= 0 && r.shared_tokens > 0) {
          const auto& sr = metro_sessions[static_cast<std::size_t>(r.metro)][static_cast<std::size_t>(r.ring_slot)];
          if (sr.session == r.session && sr.site == dep.site)
            v.prefix_hit = static_cast<double>(r.shared_tokens) / r.req.prompt_tokens;
        }
      }
      views.push_back(v);
      view_deploy.push_back(d);
    }
    if (views.empty()) {
      lose(slot, "no site up serves " + models[static_cast<std::size_t>(model)]);
      return;
    }
    const control::GeoRequest gr{r.gid, r.req.prompt_tokens, static_cast<int>(r.req.priority), r.session};
    const auto pick = router->pick(gr, views);
    if (!pick) {
      lose(slot, "router rejected");
      return;
    }
    const auto& v = views[*pick];
    r.site = v.site;
    r.deploy = view_deploy[*pick];
    auto& dep = deploys[static_cast<std::size_t>(r.deploy)];
    ++dep.outstanding;
    auto& ss = res.sites[static_cast<std::size_t>(r.site)];
    ++ss.routed;
    ss.peak_outstanding = std::max(ss.peak_outstanding, dep.outstanding);
    if (r.ring_slot >= 0) {
      auto& sr = metro_sessions[static_cast<std::size_t>(r.metro)][static_cast<std::size_t>(r.ring_slot)];
      if (sr.session == r.session) sr.site = r.site;
    }
    r.one_way_ms = v.rtt_ms / 2;
    const Ns one_way = core::from_seconds(r.one_way_ms / 1000);
    const int access = metro_link0 + r.metro;
    count_kind("upload", r.upload_bytes, false);
    r.step_start = now;
    if (r.upload_bytes >= cfg.flow_threshold_bytes) {
      r.stage = Stage::kUpload;
      start_flow({access}, user_class(r.req.priority), r.upload_bytes, FlowKind::kUpload, static_cast<int>(slot),
                 -1, r.site, now);
    } else {
      r.stage = Stage::kAtSite;
      const double xfer = r.upload_bytes / fn.capacity(access);
      r.net_ns += one_way + core::from_seconds(xfer);
      step_at(slot, now + one_way + core::from_seconds(xfer));
    }
  }

  // The request is at its site (or back from a retrieval): retrieve, or run.
  void at_site(std::uint32_t slot, Ns now) {
    Req& r = reqs[slot];
    const auto& dep = deploys[static_cast<std::size_t>(r.deploy)];
    if (!site_up[static_cast<std::size_t>(r.site)] || dep.up == 0) {
      retry(slot, now, "site outage");
      return;
    }
    if (r.retrievals_left > 0) {
      start_retrieval(slot, now);
      return;
    }
    // Within the site: llm-d scores the replicas (pods) as it scores sites, prefix included;
    // every other policy leaves it to the site's balancer: the fewest outstanding requests.
    int best = -1;
    SessionRec* sr = nullptr;
    if (r.ring_slot >= 0) {
      auto& rec = metro_sessions[static_cast<std::size_t>(r.metro)][static_cast<std::size_t>(r.ring_slot)];
      if (rec.session == r.session) sr = &rec;
    }
    if (router_needs_detail) {
      pod_views.clear();
      for (int i = dep.first; i < dep.first + dep.count; ++i) {
        if (!replica_up[static_cast<std::size_t>(i)]) continue;
        const auto& rep = replicas[static_cast<std::size_t>(i)];
        control::SiteView v;
        v.site = i;
        v.outstanding = rep.outstanding();
        v.waiting = rep.waiting();
        v.replicas = 1;
        v.kv_usage = rep.kv_usage();
        v.prefix_hit = sr && sr->replica == i && r.shared_tokens > 0
                           ? static_cast<double>(r.shared_tokens) / r.req.prompt_tokens
                           : 0.0;
        pod_views.push_back(v);
      }
      const control::GeoRequest gr{r.gid, r.req.prompt_tokens, static_cast<int>(r.req.priority), r.session};
      best = pod_views[router->pick(gr, pod_views).value_or(0)].site;
    } else {
      for (int i = dep.first; i < dep.first + dep.count; ++i) {
        if (!replica_up[static_cast<std::size_t>(i)]) continue;
        if (best < 0 || replicas[static_cast<std::size_t>(i)].outstanding() <
                            replicas[static_cast<std::size_t>(best)].outstanding())
          best = i;
      }
    }
    if (sr) sr->replica = best;
    r.stage = Stage::kEngine;
    r.t_enqueue = now;
    // The engine takes the request's block hashes; its scalars stay here for the records, and an
    // evacuation hands the hashes back.
    workload::Request handed = std::move(r.req);
    r.req.block_hashes = {};
    handed.arrival = now;
    replicas[static_cast<std::size_t>(best)].enqueue(std::move(handed), now);
    sync(static_cast<std::size_t>(best));
  }

  void start_retrieval(std::uint32_t slot, Ns now) {
    Req& r = reqs[slot];
    const auto& tc = w.workload.classes[static_cast<std::size_t>(r.cls)];
    --r.retrievals_left;
    ++res.retrievals;
    r.stage = Stage::kRetrieval;
    r.step_start = now;
    r.req.prompt_tokens += static_cast<std::int32_t>(tc.retrieval_tokens);
    const auto& holders = shard_holders[rng_route.below(shard_holders.size())];
    int holder = -1;
    double best = 1e300;
    for (int h : holders) {
      if (!site_up[static_cast<std::size_t>(h)]) continue;
      const Route& rt = route(h, r.site);
      if (rt.ok && rt.one_way_ms < best) best = rt.one_way_ms, holder = h;
    }
    const Ns compute = core::from_seconds(tc.retrieval_compute_ms / 1000);
    if (holder < 0) {  // every holder is down or cut off: the step fails, the request goes on
      ++res.retrieval_failures;
      step_at(slot, now + compute);
      return;
    }
    const Route& rt = route(holder, r.site);
    const double bytes = tc.retrieval_mb * 1e6;
    const Ns rtt = core::from_seconds(2 * rt.one_way_ms / 1000);
    if (holder != r.site) count_kind("retrieval", bytes, true);
    if (holder != r.site && bytes >= cfg.flow_threshold_bytes) {
      start_flow(rt.links, kClassRetrieval, bytes, FlowKind::kRetrieval, static_cast<int>(slot), holder, r.site, now);
      return;
    }
    count_link_bytes(rt.links, bytes);
    double xfer = 0;
    for (int dl : rt.links) xfer = std::max(xfer, bytes / fn.capacity(dl));
    const Ns t = now + rtt + compute + core::from_seconds(xfer);
    step_at(slot, t);
  }

  void flow_done(int id, Ns now) {
    Flow& f = flows[static_cast<std::size_t>(id)];
    const FlowKind kind = f.kind;
    const int owner = f.owner, src = f.src, dst = f.dst;
    end_flow(id, now);
    if (kind == FlowKind::kSync) {
      if (--sync_parts[static_cast<std::size_t>(owner)] == 0)
        res.staleness[static_cast<std::size_t>(owner)].ready_s = core::to_seconds(now);
      return;
    }
    const auto slot = static_cast<std::uint32_t>(owner);
    Req& r = reqs[slot];
    if (kind == FlowKind::kUpload) {
      const Ns one_way = core::from_seconds(r.one_way_ms / 1000);
      r.net_ns += now - r.step_start + one_way;
      r.stage = Stage::kAtSite;
      step_at(slot, now + one_way);
    } else {
      const auto& tc = w.workload.classes[static_cast<std::size_t>(r.cls)];
      const Ns rtt = core::from_seconds(2 * route(src, dst).one_way_ms / 1000);
      step_at(slot, now + rtt + core::from_seconds(tc.retrieval_compute_ms / 1000));
    }
  }

  void step(std::uint32_t slot, Ns now) {
    Req& r = reqs[slot];
    switch (r.stage) {
      case Stage::kRoute:
        route_req(slot, now);
        break;
      case Stage::kAtSite:
        at_site(slot, now);
        break;
      case Stage::kRetrieval:
        r.retrieval_ns += now - r.step_start;
        at_site(slot, now);
        break;
      default:
        break;
    }
  }

  // ---- replicas ---------------------------------------------------------------------------------
  void sync(std::size_t i) {
    const Ns t = replicas[i].next_event_time();
    if (t == scheduled[i]) return;
    scheduled[i] = t;
    ++generation[i];
    if (t != core::kNever) q.push(t, static_cast<std::int32_t>(i), generation[i]);
  }

  void drain(std::size_t i) {
    auto& done = replicas[i].completions();
    for (const auto& c : done) complete(c);
    done.clear();
  }

  void complete(const engine::Completion& c) {
    const auto slot = static_cast<std::uint32_t>(c.id);
    Req& r = reqs[slot];
    auto& cs = res.classes[static_cast<std::size_t>(r.cls)];
    --deploys[static_cast<std::size_t>(r.deploy)].outstanding;
    if (c.rejected) {
      row(r, "rejected", "does not fit in the KV cache", -1, -1, -1, -1, -1, 0);
      ++res.rejected;
      ++cs.rejected;
      free_req(slot);
      return;
    }
    const auto& tc = w.workload.classes[static_cast<std::size_t>(r.cls)];
    const Ns back = core::from_seconds(r.one_way_ms / 1000);
    const double ttft = core::to_ms(c.first_token + back - r.t_arrive);
    const double e2e = core::to_ms(c.finish + back - r.t_arrive);
    const double tpot = c.output_tokens > 1 ? core::to_ms(c.finish - c.first_token) / (c.output_tokens - 1) : 0;
    ++res.completed;
    ++cs.completed;
    cs.output_tokens += static_cast<std::uint64_t>(c.output_tokens);
    cs.prompt_tokens += static_cast<std::uint64_t>(c.prompt_tokens);
    cs.cached_tokens += static_cast<std::uint64_t>(c.cached_tokens);
    cs.ttft.add(ttft);
    cs.e2e.add(e2e);
    if (c.output_tokens > 1) cs.tpot.add(tpot);
    cs.network.add(core::to_ms(r.net_ns + back));
    if (r.retrieval_ns > 0) cs.retrieval.add(core::to_ms(r.retrieval_ns));
    cs.queue.add(core::to_ms(c.first_scheduled - r.t_enqueue));
    cs.compute.add(core::to_ms(c.finish - c.first_scheduled));
    const bool met = (tc.slo_ttft_ms <= 0 || ttft <= tc.slo_ttft_ms) && (tc.slo_tpot_ms <= 0 || tpot <= tc.slo_tpot_ms);
    if (met) {
      ++cs.met_slo;
      ++res.metro_met_slo[static_cast<std::size_t>(r.metro)];
    }
    res.metro_ttft_sum[static_cast<std::size_t>(r.metro)] += ttft;
    ++res.sites[static_cast<std::size_t>(r.site)].completed;
    ++bucket.completed;
    bucket.ttft.add(ttft);
    count_kind("response", c.output_tokens * cfg.response_bytes_per_token, false);
    row(r, "completed", met ? "" : "missed SLO", ttft, tpot, e2e, core::to_ms(c.first_scheduled - r.t_enqueue),
        core::to_ms(c.finish - c.first_scheduled), c.output_tokens);
    free_req(slot);
  }

  // ---- scenario ---------------------------------------------------------------------------------
  void set_site_capacity(int site, double factor, bool up, Ns now) {
    site_up[static_cast<std::size_t>(site)] = up ? 1 : 0;
    for (int d : site_deploy[static_cast<std::size_t>(site)]) {
      if (d < 0) continue;
      auto& dep = deploys[static_cast<std::size_t>(d)];
      const int want = up ? static_cast<int>(std::lround(dep.count * factor)) : 0;
      for (int k = 0; k < dep.count; ++k) {
        const auto i = static_cast<std::size_t>(dep.first + k);
        if (k < want && !replica_up[i]) {
          replica_up[i] = 1;
          replicas[i].restart(now);
        } else if (k >= want && replica_up[i]) {
          replica_up[i] = 0;
          drain(i);
          auto evacuated = replicas[i].evacuate(now);
          ++generation[i];
          scheduled[i] = core::kNever;
          res.sites[static_cast<std::size_t>(site)].evacuated += evacuated.size();
          for (auto& e : evacuated) {
            reqs[static_cast<std::size_t>(e.id)].req.block_hashes = std::move(e.block_hashes);
            retry(static_cast<std::uint32_t>(e.id), now, "site outage");
          }
        }
      }
      dep.up = want;
    }
  }

  void set_link(int link, double factor, Ns now) {
    link_factor[static_cast<std::size_t>(link)] = factor;
    const double cap = w.links[static_cast<std::size_t>(link)].gbps * 1e9 / 8 * factor;
    fn.set_capacity(2 * link, cap);
    fn.set_capacity(2 * link + 1, cap);
    compute_routes();
    if (te_mode) request_te(now);
    // Flows over a cut link move to the new route with the bytes they have left.
    if (factor > 0) return;
    for (std::size_t id = 0; id < flows.size(); ++id) {
      Flow& f = flows[id];
      if (!f.alive || f.src < 0) continue;
      const bool crosses = std::any_of(f.links.begin(), f.links.end(), [&](int dl) { return dl / 2 == link; });
      if (!crosses) continue;
      const Route& rt = route(f.src, f.dst);
      if (!rt.ok) continue;  // stalls until the link comes back
      settle(f, now);
      Flow copy = f;
      end_flow(static_cast<int>(id), now);
      const int nid = start_flow(rt.links, copy.cls, copy.remaining, copy.kind, copy.owner, copy.src, copy.dst, now);
      (void)nid;
    }
  }

  void publish(const world::Event& e, Ns now) {
    const int repo_site = w.repositories[static_cast<std::size_t>(e.repo)].site;
    const double bytes = e.size_gb * 1e9;
    std::vector<std::pair<int, int>> pulls;  // (site, staleness index)
    for (std::size_t s = 0; s < w.sites.size(); ++s) {
      if (!e.model.empty()) {
        bool deploys_it = false;
        for (const auto& d : w.sites[s].deployments) deploys_it |= d.model == e.model;
        if (!deploys_it) continue;
      }
      res.staleness.push_back(Staleness{e.artifact, w.sites[s].id, core::to_seconds(now), -1});
      sync_parts.push_back(0);
      const int idx = static_cast<int>(res.staleness.size() - 1);
      if (static_cast<int>(s) == repo_site) {
        res.staleness.back().ready_s = core::to_seconds(now);
        continue;
      }
      count_kind("sync", bytes, true);
      if (!route(repo_site, static_cast<int>(s)).ok) continue;
      pulls.emplace_back(static_cast<int>(s), idx);
    }
    if (!te_mode) {
      for (auto [s, idx] : pulls) {
        sync_parts[static_cast<std::size_t>(idx)] = 1;
        start_flow(route(repo_site, s).links, kClassSync, bytes, FlowKind::kSync, idx, repo_site, s, now);
      }
      return;
    }
    // te: announce every pull, solve once, then split each pull over its allocated paths (as B4
    // splits an aggregate's flows across tunnels), in proportion to each path's allocation.
    std::vector<int> agg_of;
    for (auto [s, idx] : pulls) {
      agg_of.push_back(agg_for(repo_site, s, kClassSync));
      aggs[static_cast<std::size_t>(agg_of.back())].pending += bytes;
    }
    if (!pulls.empty()) te_solve(now);
    for (std::size_t k = 0; k < pulls.size(); ++k) {
      const auto [s, idx] = pulls[k];
      Agg& a = aggs[static_cast<std::size_t>(agg_of[k])];
      a.pending = std::max(0.0, a.pending - bytes);
      double total = 0;
      for (double x : a.alloc) total += x;
      std::vector<std::pair<std::size_t, double>> parts;
      for (std::size_t p = 0; p < a.alloc.size(); ++p)
        if (a.alloc[p] > 0) parts.emplace_back(p, bytes * a.alloc[p] / total);
      if (parts.empty()) {  // no allocation (all paths saturated): the lowest-latency route
        sync_parts[static_cast<std::size_t>(idx)] = 1;
        start_flow(route(repo_site, s).links, kClassSync, bytes, FlowKind::kSync, idx, repo_site, s, now);
        continue;
      }
      sync_parts[static_cast<std::size_t>(idx)] = static_cast<int>(parts.size());
      for (auto [p, b] : parts) start_flow_on(a, agg_of[k], p, b, FlowKind::kSync, idx, now);
    }
  }

  // te: a flow of aggregate `a` on its path p, bounded to its share of the path's allocation.
  int start_flow_on(Agg& a, int agg, std::size_t p, double bytes, FlowKind kind, int owner, Ns now) {
    const int id = new_flow(a.paths[p], a.cls, bytes, kind, owner, a.src, a.dst, agg, static_cast<int>(p), now);
    a.on_path[p].push_back(id);
    rebound(a, static_cast<int>(p));
    return id;
  }

  void scenario(std::uint32_t code, Ns now) {
    const auto& e = w.events[code / 2];
    const bool start = code % 2 == 0;
    using K = world::Event::Kind;
    switch (e.kind) {
      case K::kOutage:
        set_site_capacity(e.site, start ? 0 : 1, !start, now);
        break;
      case K::kCapacity:
        set_site_capacity(e.site, start ? e.factor : 1, true, now);
        break;
      case K::kLinkCut:
      case K::kLinkCapacity:
        set_link(e.link, start ? e.factor : 1, now);
        break;
      case K::kSurge:
        for (std::size_t m = 0; m < w.metros.size(); ++m)
          if (static_cast<int>(m) == e.metro || (!e.country.empty() && w.metros[m].country == e.country))
            metro_surge[m] = start ? e.factor : 1;
        break;
      case K::kPublish:
        publish(e, now);
        break;
    }
  }

  // ---- demand -----------------------------------------------------------------------------------
  void recompute_demand(Ns t) {
    const double pop = population;
    const double base = w.workload.requests_per_day * cfg.scale / 86400;
    const double hours = core::to_seconds(t) / 3600;
    double cum = 0;
    for (std::size_t i = 0; i < w.metros.size(); ++i) {
      double h = std::fmod(hours + w.metros[i].utc_offset_h, 24.0);
      if (h < 0) h += 24;
      const auto h0 = static_cast<std::size_t>(h) % 24;
      const double f = h - std::floor(h);
      const double d = w.workload.diurnal[h0] * (1 - f) + w.workload.diurnal[(h0 + 1) % 24] * f;
      cum += base * w.metros[i].population / pop * d * metro_surge[i];
      metro_cum[i] = cum;
    }
    const auto& rhythm = w.workload.rhythm;
    const double f = rhythm.empty() ? 1.0 : rhythm[static_cast<std::size_t>(t / kWindowNs) % rhythm.size()];
    if (f != 1.0)
      for (auto& c : metro_cum) c *= f;
    total_rate = cum * f;
  }
  void next_arrival(Ns now) {
    if (now >= horizon) return;
    if (total_rate <= 0) {
      q.push(window_end, kWindow);
      return;
    }
    const Ns t = now + std::max<Ns>(1, core::from_seconds(-std::log(rng_arrival.uniform()) / total_rate));
    if (t >= window_end) q.push(window_end, kWindow);
    else q.push(t, kArrival);
  }

  PlanetResult run(const std::function<void(double, std::uint64_t)>& progress) {
    for (std::size_t i = 0; i < w.events.size(); ++i) {
      const auto& e = w.events[i];
      q.push(e.at, kScenario, static_cast<std::uint32_t>(2 * i));
      if (e.duration > 0 && e.kind != world::Event::Kind::kPublish)
        q.push(e.at + e.duration, kScenario, static_cast<std::uint32_t>(2 * i + 1));
    }
    const Ns bucket_ns = core::from_seconds(cfg.bucket_s);
    q.push(std::min(bucket_ns, horizon), kBucket);
    window_end = 0;
    q.push(0, kWindow);
    if (te_mode) q.push(0, kTe, 0);
    Ns now = 0;
    std::uint64_t next_progress = 1 << 16;
    while (!q.empty()) {
      const sim::Event ev = q.pop();
      now = ev.t;
      if (now > horizon + kDrainNs) break;
      ++res.events;
      if (ev.target >= 0) {
        const auto i = static_cast<std::size_t>(ev.target);
        if (ev.generation != generation[i]) continue;
        scheduled[i] = core::kNever;
        replicas[i].advance(now);
        drain(i);
        sync(i);
      } else if (ev.target <= kFlowBase) {
        const int id = kFlowBase - ev.target;
        if (ev.generation != flows[static_cast<std::size_t>(id)].gen) continue;
        flow_done(id, now);
      } else if (ev.target == kStep) {
        if (reqs[ev.generation].pending != now) continue;
        reqs[ev.generation].pending = -1;
        step(ev.generation, now);
      } else if (ev.target == kArrival) {
        arrive(now);
        next_arrival(now);
        if (progress && res.arrived >= next_progress) {
          next_progress += 1 << 16;
          progress(core::to_seconds(now) / core::to_seconds(horizon), res.arrived);
        }
      } else if (ev.target == kWindow) {
        if (now < horizon) {
          recompute_demand(now);
          window_end = std::min(now + kWindowNs, horizon);
          next_arrival(now);
        }
      } else if (ev.target == kScenario) {
        scenario(ev.generation, now);
      } else if (ev.target == kTe) {
        if (ev.generation == 0) {  // the periodic solve
          te_solve(now);
          if (now < horizon) q.push(now + core::from_seconds(cfg.te_interval_s), kTe, 0);
        } else if (te_dirty) {
          te_solve(now);
        } else {
          te_pending = false;
        }
      } else if (ev.target == kBucket) {
        close_bucket(now);
        if (now < horizon) q.push(std::min(now + bucket_ns, horizon), kBucket);
      }
      update_flows(now);
    }
    // Requests still in flight after the drain are counted, never dropped.
    std::vector<char> is_free(reqs.size(), 0);
    for (auto s : free_reqs) is_free[s] = 1;
    for (std::uint32_t slot = 0; slot < reqs.size(); ++slot)
      if (!is_free[slot]) lose(slot, "unfinished at end of run");
    res.end = now;
    for (auto& rep : replicas) rep.finish(std::max(now, horizon));
    if (bucket_start < now) close_bucket(now);
    for (std::size_t r = 0; r < replicas.size(); ++r)
      res.sites[static_cast<std::size_t>(deploys[static_cast<std::size_t>(replica_deploy[r])].site)].it_energy_j +=
          replicas[r].stats().energy_j;
    for (const auto& l : w.links) res.network_energy_j += 2 * l.transceiver_w * core::to_seconds(std::max(now, horizon));
    flush_csv(true);
    if (progress) progress(1.0, res.arrived);
    return std::move(res);
  }
};

PlanetSim::PlanetSim(const world::World& world, const model::Catalog& catalog, const PlanetConfig& cfg)
    : impl_(std::make_unique<Impl>(world, catalog, cfg)) {}
PlanetSim::~PlanetSim() = default;
PlanetResult PlanetSim::run(const std::function<void(double, std::uint64_t)>& progress) {
  return impl_->run(progress);
}

}  // namespace infergrid::twin
