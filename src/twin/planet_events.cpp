// The planet twin's scenario events: outages and capacity, link cuts, publications and sync.
#include "twin/planet_impl.hpp"

namespace infergrid::twin {

// ---- scenario ---------------------------------------------------------------------------------
void PlanetSim::Impl::Scenario::set_site_capacity(int site, double factor, bool up, Ns now) {
  sim.fleet.site_up[static_cast<std::size_t>(site)] = up ? 1 : 0;
  const auto evacuate = [&](std::size_t i) {
    sim.fleet.drain(i);
    auto evacuated = sim.fleet.replicas[i].evacuate(now);
    sim.fleet.reindex(i);
    ++sim.fleet.generation[i];
    sim.fleet.scheduled[i] = core::kNever;
    sim.res.sites[static_cast<std::size_t>(site)].evacuated += evacuated.size();
    for (auto& e : evacuated) {
      sim.demand.reqs[static_cast<std::size_t>(e.id)].req.block_hashes = std::move(e.block_hashes);
      sim.demand.retry(static_cast<std::uint32_t>(e.id), now, "site outage");
    }
  };
  for (int d : sim.fleet.site_deploy[static_cast<std::size_t>(site)]) {
    if (d < 0) continue;
    auto& dep = sim.fleet.deploys[static_cast<std::size_t>(d)];
    // The factor applies to the sim.replicas the fleet holds ready (starting ones go on starting).
    std::vector<std::size_t> ready;
    for (int k = 0; k < dep.count; ++k) {
      const auto i = static_cast<std::size_t>(dep.first + k);
      if (sim.fleet.slots[i].phase == Phase::kReady) ready.push_back(i);
      else if (sim.fleet.slots[i].phase == Phase::kDraining && !up) {  // what it still held is retried elsewhere
        evacuate(i);
        sim.fleet.power_down(i, now);
      }
    }
    const int want = up ? static_cast<int>(std::lround(static_cast<double>(ready.size()) * factor)) : 0;
    for (std::size_t k = 0; k < ready.size(); ++k) {
      const auto i = ready[k];
      if (static_cast<int>(k) < want && !sim.fleet.replica_up[i]) {
        // Back from an outage or a capacity loss: the replica reloads its weights from local disk
        // and warms up before it takes requests again (ready again in Fleet::loaded).
        auto& sl = sim.fleet.slots[i];
        sim.fleet.replicas[i].restart(now);
        sl.restart = true;
        sl.requested = sl.pulled = now;
        ++dep.restarts;
        sim.fleet.begin_load(i, now);
      } else if (static_cast<int>(k) >= want && sim.fleet.replica_up[i]) {
        sim.fleet.replica_up[i] = 0;
        --dep.up;
        evacuate(i);
      }
    }
  }
}

void PlanetSim::Impl::Scenario::set_link(int link, double factor, Ns now) {
  sim.net.link_factor[static_cast<std::size_t>(link)] = factor;
  const double cap = sim.w.links[static_cast<std::size_t>(link)].gbps * 1e9 / 8 * factor;
  sim.net.fn.set_capacity(2 * link, cap);
  sim.net.fn.set_capacity(2 * link + 1, cap);
  sim.net.compute_routes();
  if (sim.net.te_mode) sim.net.request_te(now);
  // Flows over a cut link move to the new route with the bytes they have left.
  if (factor > 0) return;
  for (std::size_t id = 0; id < sim.net.flows.size(); ++id) {
    Flow& f = sim.net.flows[id];
    const bool upload = f.kind == FlowKind::kUpload;  // a user's upload relayed from its entry site
    if (!f.alive || (f.src < 0 && !upload)) continue;
    const bool crosses = std::any_of(f.links.begin(), f.links.end(), [&](int dl) { return dl / 2 == link; });
    if (!crosses) continue;
    std::vector<int> links;
    if (upload) {
      const Req& r = sim.demand.reqs[static_cast<std::size_t>(f.owner)];
      const Route& rt = sim.net.route(sim.net.metro_entry[static_cast<std::size_t>(r.metro)], f.dst);
      if (!rt.ok) continue;
      links.push_back(sim.net.metro_link0 + r.metro);
      links.insert(links.end(), rt.links.begin(), rt.links.end());
    } else {
      const Route& rt = sim.net.route(f.src, f.dst);
      if (!rt.ok) continue;  // stalls until the link comes back
      links = rt.links;
    }
    sim.net.settle(f, now);
    Flow copy = f;
    sim.net.end_flow(static_cast<int>(id), now);
    const int nid = sim.net.start_flow(std::move(links), copy.cls, copy.remaining, copy.kind, copy.owner, copy.src, copy.dst, now);
    (void)nid;
  }
}

void PlanetSim::Impl::Scenario::publish(const world::Event& e, Ns now) {
  const int repo_site = sim.w.repositories[static_cast<std::size_t>(e.repo)].site;
  const double bytes = e.size_gb * 1e9 / sim.w.scale;  // one copy per site: scaled (world.hpp)
  std::vector<std::pair<int, int>> pulls;  // (site, staleness index)
  for (std::size_t s = 0; s < sim.w.sites.size(); ++s) {
    if (!e.model.empty()) {
      bool deploys_it = false;
      for (const auto& d : sim.w.sites[s].deployments) deploys_it |= d.model == e.model;
      if (!deploys_it) continue;
    }
    sim.res.staleness.push_back(Staleness{e.artifact, sim.w.sites[s].id, core::to_seconds(now), -1});
    sim.net.sync_parts.push_back(0);
    sim.net.sync_of.emplace_back(static_cast<int>(&e - sim.w.events.data()), static_cast<int>(s));
    const int idx = static_cast<int>(sim.res.staleness.size() - 1);
    if (static_cast<int>(s) == repo_site) {
      sim.res.staleness.back().ready_s = core::to_seconds(now);
      sim.fleet.synced(static_cast<std::size_t>(idx), now);
      continue;
    }
    sim.rec.count_kind("sync", bytes, true);
    if (!sim.net.route(repo_site, static_cast<int>(s)).ok) continue;
    pulls.emplace_back(static_cast<int>(s), idx);
  }
  if (!sim.net.te_mode) {
    for (auto [s, idx] : pulls) {
      sim.net.sync_parts[static_cast<std::size_t>(idx)] = 1;
      sim.net.start_flow(sim.net.route(repo_site, s).links, kClassSync, bytes, FlowKind::kSync, idx, repo_site, s, now);
    }
    return;
  }
  // te: announce every pull, solve once, then split each pull over its allocated paths (as B4
  // splits an aggregate's sim.flows across tunnels), in proportion to each path's allocation.
  std::vector<int> agg_of;
  for (auto [s, idx] : pulls) {
    agg_of.push_back(sim.net.agg_for(repo_site, s, kClassSync));
    sim.net.aggs[static_cast<std::size_t>(agg_of.back())].pending += bytes;
  }
  if (!pulls.empty()) sim.net.te_solve(now);
  for (std::size_t k = 0; k < pulls.size(); ++k) {
    const auto [s, idx] = pulls[k];
    Agg& a = sim.net.aggs[static_cast<std::size_t>(agg_of[k])];
    a.pending = std::max(0.0, a.pending - bytes);
    double total = 0;
    for (double x : a.alloc) total += x;
    std::vector<std::pair<std::size_t, double>> parts;
    for (std::size_t p = 0; p < a.alloc.size(); ++p)
      if (a.alloc[p] > 0) parts.emplace_back(p, bytes * a.alloc[p] / total);
    if (parts.empty()) {  // no allocation (all paths saturated): the lowest-latency route
      sim.net.sync_parts[static_cast<std::size_t>(idx)] = 1;
      sim.net.start_flow(sim.net.route(repo_site, s).links, kClassSync, bytes, FlowKind::kSync, idx, repo_site, s, now);
      continue;
    }
    sim.net.sync_parts[static_cast<std::size_t>(idx)] = static_cast<int>(parts.size());
    for (auto [p, b] : parts) sim.net.start_flow_on(a, agg_of[k], p, b, FlowKind::kSync, idx, now);
  }
}

void PlanetSim::Impl::Scenario::scenario(std::uint32_t code, Ns now) {
  const auto& e = sim.w.events[code / 2];
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
      for (std::size_t m = 0; m < sim.w.metros.size(); ++m)
        if (static_cast<int>(m) == e.metro || (!e.country.empty() && sim.w.metros[m].country == e.country))
          sim.demand.metro_surge[m] = start ? e.factor : 1;
      break;
    case K::kPublish:
      publish(e, now);
      break;
    case K::kPowerCap:  // the site's facility budget; the fleet holds it at the next power window
      sim.fleet.site_power[static_cast<std::size_t>(e.site)].budget_factor = start ? e.factor : 1;
      break;
  }
}

}  // namespace infergrid::twin
