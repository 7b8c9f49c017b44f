// The planet twin's transport: routes between sites, flows on the network, TE aggregates.
#include "twin/planet_impl.hpp"

namespace infergrid::twin {

// Lowest-latency routes between all sites over the links still up (Dijkstra from each site).
void PlanetSim::Impl::Transport::compute_routes() {
  const std::size_t S = sim.w.sites.size();
  std::vector<std::vector<std::pair<int, int>>> adj(S);  // (neighbor, directed link)
  for (std::size_t l = 0; l < sim.w.links.size(); ++l) {
    if (link_factor[l] <= 0) continue;
    adj[static_cast<std::size_t>(sim.w.links[l].a)].push_back({sim.w.links[l].b, static_cast<int>(2 * l)});
    adj[static_cast<std::size_t>(sim.w.links[l].b)].push_back({sim.w.links[l].a, static_cast<int>(2 * l + 1)});
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
        const double nd = d + sim.w.links[static_cast<std::size_t>(dl / 2)].km * net::RttModel::kFiberMsPerKm + sim.w.per_hop_ms;
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
        const auto& lk = sim.w.links[static_cast<std::size_t>(dl / 2)];
        v = (dl % 2 == 0) ? lk.a : lk.b;
      }
      std::reverse(r.links.begin(), r.links.end());
    }
  }
}

// ---- bytes on links ---------------------------------------------------------------------------
void PlanetSim::Impl::Transport::count_link_bytes(const std::vector<int>& dlinks, double bytes) {
  for (int dl : dlinks) {
    if (dl >= metro_link0) continue;
    dlink_bucket_bytes[static_cast<std::size_t>(dl)] += bytes;
    dlink_settled[static_cast<std::size_t>(dl)] += bytes;
    auto& ls = sim.res.links[static_cast<std::size_t>(dl / 2)];
    (dl % 2 == 0 ? ls.bytes_ab : ls.bytes_ba) += bytes;
  }
}

// ---- flows ------------------------------------------------------------------------------------
// A flow in the network and its record (generation kept: stale completions stay stale).
int PlanetSim::Impl::Transport::new_flow(std::vector<int> dlinks, int cls, double bytes, FlowKind kind, int owner, int src, int dst, int agg,
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
  ++sim.res.flows;
  return id;
}

// te: the aggregate of (src, dst, class), created on first use.
int PlanetSim::Impl::Transport::agg_for(int src, int dst, int cls) {
  const auto [it, fresh] = agg_index.try_emplace(std::make_tuple(src, dst, cls), static_cast<int>(aggs.size()));
  if (fresh) aggs.push_back(Agg{src, dst, cls, {}, {}, {}, {}, 0});
  return it->second;
}

int PlanetSim::Impl::Transport::start_flow(std::vector<int> dlinks, int cls, double bytes, FlowKind kind, int owner, int src,
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
  if (!te_mode && !pair_limit.empty() && src >= 0) {
    const auto key = std::make_tuple(src, dst, cls);
    if (pair_limit.count(key)) rebound_pair(key, now);
  }
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
void PlanetSim::Impl::Transport::rebound(Agg& a, int p) {
  const auto& v = a.on_path[static_cast<std::size_t>(p)];
  if (v.empty()) return;
  const double b = a.satisfied ? net::FlowNetwork::kUnbounded
                               : std::max(1.0, a.alloc[static_cast<std::size_t>(p)] / static_cast<double>(v.size()));
  for (int f : v) fn.set_bound(f, b);
}

void PlanetSim::Impl::Transport::request_te(Ns now) {
  te_dirty = true;
  if (te_pending) return;
  te_pending = true;
  // At most one solve per simulated second on demand; the periodic one comes anyway.
  sim.q.push_kind(std::max(now, te_last + core::kNsPerSec), Ev::kTe, 0, 1);
}

// The te module's tiered max-min over every aggregate with bytes left.
void PlanetSim::Impl::Transport::te_solve(Ns now) {
  te_pending = false;
  te_dirty = false;
  te_last = now;
  te::Graph g;
  for (std::size_t s = 0; s < sim.w.sites.size(); ++s) {
    te::Node n;
    n.id = static_cast<std::int64_t>(s);
    n.name = sim.w.sites[s].id;
    g.nodes.push_back(n);
  }
  std::vector<int> te_to_dl;
  for (std::size_t l = 0; l < sim.w.links.size(); ++l) {
    if (link_factor[l] <= 0) continue;
    // In GB/s (te scales any units, but its answers read better in these).
    const double cap = sim.w.links[l].gbps / 8 * link_factor[l];
    const double lat = sim.w.links[l].km * net::RttModel::kFiberMsPerKm + sim.w.per_hop_ms;
    g.links.push_back({sim.w.links[l].a, sim.w.links[l].b, cap, lat});
    te_to_dl.push_back(static_cast<int>(2 * l));
    g.links.push_back({sim.w.links[l].b, sim.w.links[l].a, cap, lat});
    te_to_dl.push_back(static_cast<int>(2 * l + 1));
  }
  g.rebuild_adjacency();
  te::Problem p;
  p.graph = &g;
  std::vector<int> agg_of;
  std::map<int, double> asked;  // per aggregate, the rate its demands ask for (bytes/s)
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
    auto paths = te::k_shortest_paths(g, a.src, a.dst, sim.cfg.te_paths);
    if (paths.empty()) continue;
    double rate = left / sim.cfg.te_horizon_s;
    asked[static_cast<int>(k)] = rate;  // before a limit: a limited aggregate stays bounded
    // A sim.controller's limit on the pair and class caps what the aggregate asks for.
    if (const auto lim = pair_limit.find(std::make_tuple(a.src, a.dst, a.cls)); lim != pair_limit.end())
      rate = std::min(rate, lim->second);
    // A reservation: up to its rate in the first tier, the rest in the aggregate's own.
    double reserved = 0;
    if (const auto r = pair_reserve.find(std::make_tuple(a.src, a.dst, a.cls)); r != pair_reserve.end())
      reserved = std::min(rate, r->second);
    if (reserved > 0) {
      p.demands.push_back({a.src, a.dst, reserved / 1e9, 0});
      p.paths.push_back(paths);
      agg_of.push_back(static_cast<int>(k));
    }
    if (rate - reserved > 0) {
      p.demands.push_back({a.src, a.dst, (rate - reserved) / 1e9, a.cls});
      p.paths.push_back(std::move(paths));
      agg_of.push_back(static_cast<int>(k));
    }
  }
  if (p.demands.empty()) return;
  const auto t0 = std::chrono::steady_clock::now();
  const te::Allocation alloc = te::solve_fast(p, te::Objective::kMaxMin);
  sim.res.te_solve_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ++sim.res.te_solves;
  // An aggregate with a reservation has two demands on the same paths: their flows add up.
  std::map<int, std::vector<double>> merged;
  for (std::size_t d = 0; d < p.demands.size(); ++d) {
    auto& m = merged[agg_of[d]];
    m.resize(alloc.flow[d].size(), 0);
    for (std::size_t k = 0; k < alloc.flow[d].size(); ++k) m[k] += alloc.flow[d][k];
  }
  for (std::size_t d = 0; d < p.demands.size(); ++d) {
    if (d > 0 && agg_of[d] == agg_of[d - 1]) continue;  // done with its first demand
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
    a.alloc = merged[agg_of[d]];
    double got = 0;
    for (double& x : a.alloc) got += (x *= 1e9);  // back to bytes/s
    a.satisfied = got >= 0.999 * asked[agg_of[d]];
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

void PlanetSim::Impl::Transport::settle(Flow& f, Ns now) {
  const double progress = f.rate * core::to_seconds(now - f.last);
  const double moved = std::min(f.remaining, progress);
  if (moved > 0) {
    f.remaining -= moved;
    count_link_bytes(f.links, moved);
  }
  // The progress is settled now: it leaves the unsettled sum (moved went to the settled bytes).
  if (progress > 0)
    for (int dl : f.links)
      if (dl < metro_link0) dlink_rate_last_sum[static_cast<std::size_t>(dl)] += progress;
  f.last = now;
}

void PlanetSim::Impl::Transport::rerate_links(const Flow& f, double from, double to, Ns now) {
  if (from == to) return;
  const double t = core::to_seconds(now);
  for (int dl : f.links) {
    if (dl >= metro_link0) continue;
    dlink_rate_sum[static_cast<std::size_t>(dl)] += to - from;
    dlink_rate_last_sum[static_cast<std::size_t>(dl)] += (to - from) * t;
  }
}

void PlanetSim::Impl::Transport::update_flows(Ns now) {
  fn.update();
  for (int id : fn.rerated()) {
    Flow& f = flows[static_cast<std::size_t>(id)];
    settle(f, now);
    rerate_links(f, f.rate, fn.rate(id), now);
    f.rate = fn.rate(id);
    ++f.gen;
    if (f.rate > 0) {
      const Ns done = now + std::max<Ns>(1, core::from_seconds(f.remaining / f.rate));
      sim.q.push_kind(done, Ev::kFlow, id, f.gen);
    }
  }
}

void PlanetSim::Impl::Transport::end_flow(int id, Ns now) {
  Flow& f = flows[static_cast<std::size_t>(id)];
  settle(f, now);
  if (f.remaining > 0) count_link_bytes(f.links, f.remaining);  // rounding of the last ns
  rerate_links(f, f.rate, 0, now);
  f.rate = 0;
  f.alive = false;
  ++f.gen;
  fn.end_flow(id);
  if (!te_mode && !pair_limit.empty() && f.src >= 0) {
    const auto key = std::make_tuple(f.src, f.dst, f.cls);
    if (pair_limit.count(key)) rebound_pair(key, now);
  }
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

// te: a flow of aggregate `a` on its path p, bounded to its share of the path's allocation.
int PlanetSim::Impl::Transport::start_flow_on(Agg& a, int agg, std::size_t p, double bytes, FlowKind kind, int owner, Ns now) {
  const int id = new_flow(a.paths[p], a.cls, bytes, kind, owner, a.src, a.dst, agg, static_cast<int>(p), now);
  a.on_path[p].push_back(id);
  rebound(a, static_cast<int>(p));
  return id;
}

// Per-class bounds on a site pair (fair mode): the limit shared equally by the pair's flows of
// that class; te mode bounds flows by their aggregates' allocations instead.
void PlanetSim::Impl::Transport::rebound_pair(const std::tuple<int, int, int>& key, Ns now) {
  if (te_mode) {  // the next solve caps the aggregate's demand at the limit
    request_te(now);
    return;
  }
  auto& ids = pair_flows[key];
  ids.clear();
  const auto [src, dst, cls] = key;
  for (std::size_t id = 0; id < flows.size(); ++id) {
    const Flow& f = flows[id];
    if (f.alive && f.src == src && f.dst == dst && f.cls == cls) ids.push_back(static_cast<int>(id));
  }
  const auto it = pair_limit.find(key);
  for (int id : ids)
    fn.set_bound(id, it == pair_limit.end() ? net::FlowNetwork::kUnbounded
                                            : it->second / static_cast<double>(ids.size()));
  if (it == pair_limit.end()) pair_flows.erase(key);
}

}  // namespace infergrid::twin
