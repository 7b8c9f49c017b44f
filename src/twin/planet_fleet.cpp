// The planet twin's fleet: fleet.replicas that start (weights pulled as a DCI flow, loaded, warmed)
// and drain, accelerator pools, power sampled per window with site budgets held by GPU power
// caps, and the control host: what a controller observes and how its decisions are carried out.
#include "twin/planet_impl.hpp"

namespace infergrid::twin {

namespace {
constexpr Ns kSecond = core::kNsPerSec;
}

void PlanetSim::Impl::init_fleet(const model::Catalog&) {
  const std::size_t S = w.sites.size();
  fleet.has_weights.assign(S, std::vector<char>(models.size(), 0));
  fleet.pulling.assign(S, std::vector<char>(models.size(), 0));
  for (const auto& d : fleet.deploys)
    if (d.nominal > 0) fleet.has_weights[static_cast<std::size_t>(d.site)][static_cast<std::size_t>(d.model)] = 1;
  for (const auto& r : w.repositories) fleet.has_weights[static_cast<std::size_t>(r.site)].assign(models.size(), 1);
  fleet.site_power.assign(S, {});
  for (auto& d : fleet.deploys) d.powered = d.peak_ready = d.nominal;
  // Every controller's parameters are checked, the selected one built.
  const auto params_of = [&](const std::string& name) {
    control::Params p;
    if (auto it = w.control.find(name); it != w.control.end()) p.insert(it->second.begin(), it->second.end());
    return p;
  };
  for (const auto& [name, params] : w.control) {
    const auto line = w.control_line.count(name) ? w.control_line.at(name) : 0;
    try {
      control::make_controller(name, params_of(name), cfg.seed);
    } catch (const core::InputError& e) {
      core::fail_input(w.file, line, "control." + name, e.what());
    }
    for (const auto& [k, _] : params)
      if (const auto at = k.find('@'); at != std::string::npos &&
                                       std::find(models.begin(), models.end(), k.substr(at + 1)) == models.end())
        core::fail_input(w.file, line, "control." + name + "." + k, fmt::format("no site deploys '{}'", k.substr(at + 1)));
  }
  for (const auto& [k, _] : cfg.control_params)
    if (const auto at = k.find('@'); at != std::string::npos &&
                                     std::find(models.begin(), models.end(), k.substr(at + 1)) == models.end())
      core::fail_flag("control", fmt::format("'{}': no site deploys '{}'", k, k.substr(at + 1)));
  if (cfg.controller_impl) {
    controller = cfg.controller_impl;
  } else {
    auto p = params_of(cfg.controller);
    for (const auto& [k, v] : cfg.control_params) p[k] = v;
    controller = control::make_controller(cfg.controller, p, cfg.seed);
  }
  res.controller = controller->name();
  rec.power_window = core::from_seconds(w.fleet.power_window_s);
  rec.next_power = rec.power_window;
  rec.next_second = kSecond;
  rec.next_minute = 60 * kSecond;
  rec.link_hist.assign(w.links.size(), {});
  // Metro rec.groups for the observed demand: the country (the metro itself where none is given).
  std::map<std::string, int> gi;
  for (const auto& m : w.metros) {
    const std::string g = m.country.empty() ? m.name : m.country;
    const auto [it, fresh] = gi.try_emplace(g, static_cast<int>(rec.groups.size()));
    if (fresh) rec.groups.push_back(g);
    rec.metro_group.push_back(it->second);
  }
  rec.obs_arrivals.assign(rec.groups.size() * control::kPriorities, 0);
  rec.obs_ttft_sum.assign(rec.groups.size() * control::kPriorities, 0);
  rec.obs_ttft_n.assign(rec.groups.size() * control::kPriorities, 0);
}

std::shared_ptr<const model::PerfModel> PlanetSim::Impl::model_at(Deploy& d, int steps) {
  auto& m = d.by_cap[static_cast<std::size_t>(steps)];
  if (!m) m = std::make_shared<model::PerfModel>(*d.llm, *d.acc, d.tp, static_cast<double>(steps) / kCapSteps);
  return m;
}

double PlanetSim::Impl::site_budget_kw(int site) const {
  return w.sites[static_cast<std::size_t>(site)].power_cap_kw * fleet.site_power[static_cast<std::size_t>(site)].budget_factor;
}

// Facility draw now: every powered replica's accelerators (what their batch does) and hosts, x PUE.
double PlanetSim::Impl::site_facility_kw(int site) const {
  double w_it = 0;
  double host = 0;
  for (int d : fleet.site_deploy[static_cast<std::size_t>(site)]) {
    if (d < 0) continue;
    const Deploy& dep = fleet.deploys[static_cast<std::size_t>(d)];
    for (int i = dep.first; i < dep.first + dep.count; ++i) w_it += fleet.replicas[static_cast<std::size_t>(i)].power_w();
    host += dep.powered * dep.tp * dep.host_w;
  }
  return (w_it + host) * w.sites[static_cast<std::size_t>(site)].pue / 1000;
}

// What one more replica would add, drawing its decode power under the cap, host included.
double PlanetSim::Impl::replica_facility_kw(const Deploy& d, int cap_steps) const {
  const double gpu_w = std::min(d.acc->decode_w, d.acc->tdp_w * cap_steps / kCapSteps);
  return (gpu_w + d.host_w) * d.tp * w.sites[static_cast<std::size_t>(d.site)].pue / 1000;
}

void PlanetSim::Impl::set_powered(Deploy& d, int delta, Ns now) {
  d.gpu_s += static_cast<double>(d.powered) * d.tp * core::to_seconds(now - d.powered_since);
  d.powered += delta;
  d.powered_since = now;
}

bool PlanetSim::Impl::start_replica(int di, Ns now) {
  Deploy& d = fleet.deploys[static_cast<std::size_t>(di)];
  const auto site = static_cast<std::size_t>(d.site);
  const auto refuse = [&](const char* why) {
    ++d.refused;
    ++d.refused_by[why];
    return false;
  };
  if (!fleet.site_up[site]) return refuse("site down");
  int slot = -1;
  for (int i = d.first; i < d.first + d.count && slot < 0; ++i)
    if (fleet.slots[static_cast<std::size_t>(i)].phase == Phase::kOff) slot = i;
  int& free = fleet.free_accel[site][d.accel];
  if (slot < 0 || free < d.tp) return refuse("accelerator pool");
  const double budget = site_budget_kw(d.site);
  if (budget > 0) {
    // Replicas still starting draw idle power now but their decode draw once ready: count that.
    double projected = site_facility_kw(d.site) + replica_facility_kw(d, d.cap_steps);
    for (int e : fleet.site_deploy[site]) {
      if (e < 0) continue;
      const Deploy& o = fleet.deploys[static_cast<std::size_t>(e)];
      for (int k = o.first; k < o.first + o.count; ++k) {
        const Phase p = fleet.slots[static_cast<std::size_t>(k)].phase;
        if (p == Phase::kPulling || p == Phase::kLoading)
          projected += replica_facility_kw(o, o.cap_steps) -
                       (fleet.replicas[static_cast<std::size_t>(k)].power_w() + o.host_w * o.tp) *
                           w.sites[site].pue / 1000;
      }
    }
    if (projected > budget) return refuse("power budget");
  }
  // Where the weights come from: this site's disk, else the nearest site or repository holding them.
  const auto model = static_cast<std::size_t>(d.model);
  int source = -1;
  if (!fleet.has_weights[site][model] && !fleet.pulling[site][model]) {
    double best = 1e300;
    for (std::size_t s = 0; s < w.sites.size(); ++s) {
      if (s == site || !fleet.has_weights[s][model] || !fleet.site_up[s]) continue;
      const Route& rt = route(static_cast<int>(s), d.site);
      if (rt.ok && rt.one_way_ms < best) best = rt.one_way_ms, source = static_cast<int>(s);
    }
    if (source < 0) return refuse("no reachable weights");
  }
  const auto i = static_cast<std::size_t>(slot);
  free -= d.tp;
  Slot& sl = fleet.slots[i];
  sl.phase = Phase::kPulling;
  sl.requested = now;
  sl.version = d.version;
  ++d.starts;
  fleet.replicas[i].power_on(now);
  fleet.replicas[i].set_step_model(model_at(d, d.cap_steps), now);
  set_powered(d, +1, now);
  if (fleet.has_weights[site][model]) {
    sl.pulled = now;
    begin_load(i, now);
  } else if (source >= 0) {
    // One pull per site and model: fleet.replicas starting meanwhile wait for the same bytes.
    fleet.pulling[site][model] = 1;
    count_kind("weights", d.weight_bytes, true);
    d.weight_bytes_moved += d.weight_bytes;
    start_flow(route(source, d.site).links, kClassSync, d.weight_bytes, FlowKind::kWeights, di, source, d.site, now);
  }
  return true;
}

void PlanetSim::Impl::weights_arrived(int di, Ns now) {
  Deploy& d = fleet.deploys[static_cast<std::size_t>(di)];
  const auto site = static_cast<std::size_t>(d.site), model = static_cast<std::size_t>(d.model);
  fleet.has_weights[site][model] = 1;
  fleet.pulling[site][model] = 0;
  // Every deployment of the model at this site may have fleet.replicas waiting for these bytes.
  for (std::size_t k = 0; k < fleet.deploys.size(); ++k) {
    const Deploy& e = fleet.deploys[k];
    if (e.site != d.site || e.model != d.model) continue;
    for (int i = e.first; i < e.first + e.count; ++i) {
      Slot& sl = fleet.slots[static_cast<std::size_t>(i)];
      if (sl.phase != Phase::kPulling) continue;
      sl.pulled = now;
      begin_load(static_cast<std::size_t>(i), now);
    }
  }
}

void PlanetSim::Impl::begin_load(std::size_t i, Ns now) {
  const Deploy& d = fleet.deploys[static_cast<std::size_t>(fleet.replica_deploy[i])];
  Slot& sl = fleet.slots[i];
  sl.phase = Phase::kLoading;
  const double s = d.weight_bytes / (w.fleet.load_gb_s * 1e9) + w.fleet.warmup_s;
  q.push_kind(now + core::from_seconds(s), Ev::kLoaded, static_cast<std::int32_t>(i), sl.gen);
}

void PlanetSim::Impl::loaded(std::size_t i, Ns now) {
  Deploy& d = fleet.deploys[static_cast<std::size_t>(fleet.replica_deploy[i])];
  Slot& sl = fleet.slots[i];
  sl.phase = Phase::kReady;
  d.cold_pull.add(core::to_seconds(sl.pulled - sl.requested));
  d.cold_load.add(core::to_seconds(now - sl.pulled));
  d.cold_total.add(core::to_seconds(now - sl.requested));
  d.last_cold_s = core::to_seconds(now - sl.requested);
  if (fleet.site_up[static_cast<std::size_t>(d.site)]) {
    fleet.replica_up[i] = 1;
    ++d.up;
    d.peak_ready = std::max(d.peak_ready, d.up);
  }
  if (d.version > 0) roll_step(fleet.replica_deploy[i], now);  // a rolling update goes on
  // Other sites' rolls of this model may have waited for a replica to be ready here.
  for (int e : fleet.model_deploys[static_cast<std::size_t>(d.model)])
    if (e != fleet.replica_deploy[i] && fleet.deploys[static_cast<std::size_t>(e)].version > 0) roll_step(e, now);
}

void PlanetSim::Impl::synced(std::size_t k, Ns now) {
  const auto [ev, site] = net.sync_of[k];
  const auto& e = w.events[static_cast<std::size_t>(ev)];
  if (!e.roll) return;
  for (std::size_t m = 0; m < models.size(); ++m) {
    if (models[m] != e.model) continue;
    fleet.has_weights[static_cast<std::size_t>(site)][m] = 1;
    const int d = fleet.site_deploy[static_cast<std::size_t>(site)][m];
    if (d < 0) continue;
    Deploy& dep = fleet.deploys[static_cast<std::size_t>(d)];
    ++dep.version;
    dep.roll_size = 0;
    for (int k = dep.first; k < dep.first + dep.count; ++k)
      dep.roll_size += fleet.slots[static_cast<std::size_t>(k)].phase == Phase::kReady;
    roll_step(d, now);
  }
}

// Rolling to the deployment's version, keeping roll_size fleet.replicas: with room, one new replica is
// started (surge) and, once ready, one old one drains; without room, an old one drains first and
// a new one starts on its accelerators. One step at a time; done when no old replica is left.
void PlanetSim::Impl::roll_step(int di, Ns now) {
  Deploy& d = fleet.deploys[static_cast<std::size_t>(di)];
  if (d.version == 0) return;
  int ready = 0, starting = 0, draining_old = 0;
  std::size_t old = 0;
  bool any_old = false, off_slot = false;
  for (int k = d.first; k < d.first + d.count; ++k) {
    const auto j = static_cast<std::size_t>(k);
    const Phase p = fleet.slots[j].phase;
    const bool is_old = fleet.slots[j].version < d.version;
    ready += p == Phase::kReady;
    starting += p == Phase::kPulling || p == Phase::kLoading;
    draining_old += p == Phase::kDraining && is_old;
    off_slot |= p == Phase::kOff;
    if (p == Phase::kReady && is_old && (!any_old || fleet.replicas[j].outstanding() < fleet.replicas[old].outstanding()))
      old = j, any_old = true;
  }
  if (starting > 0 || draining_old > 0) return;
  if (ready > d.roll_size && any_old) {  // a new one is ready: an old one makes way
    drain_replica(old, now);
    return;
  }
  if (!any_old && ready >= d.roll_size) return;  // done
  const bool room = off_slot && fleet.free_accel[static_cast<std::size_t>(d.site)][d.accel] >= d.tp;
  if (room && start_replica(di, now)) {
    ++d.rolled;
    return;
  }
  if (!any_old) return;
  // No room: one fewer first, its accelerators start the next one; but never the model's last
  // serving replica anywhere (sites rolling at once take turns: a replica ready elsewhere first).
  if (d.up <= 1) {
    bool elsewhere = false;
    for (int e : fleet.model_deploys[static_cast<std::size_t>(d.model)])
      elsewhere |= e != di && fleet.deploys[static_cast<std::size_t>(e)].up > 0 &&
                   fleet.site_up[static_cast<std::size_t>(fleet.deploys[static_cast<std::size_t>(e)].site)];
    if (!elsewhere) return;  // retried when a replica of the model becomes ready
  }
  drain_replica(old, now);
}

void PlanetSim::Impl::power_down(std::size_t i, Ns now) {
  Deploy& d = fleet.deploys[static_cast<std::size_t>(fleet.replica_deploy[i])];
  Slot& sl = fleet.slots[i];
  fleet.replicas[i].power_off(now);
  sl.phase = Phase::kOff;
  ++sl.gen;
  fleet.free_accel[static_cast<std::size_t>(d.site)][d.accel] += d.tp;
  set_powered(d, -1, now);
  ++d.stops;
  if (d.version > 0) roll_step(fleet.replica_deploy[i], now);
}

void PlanetSim::Impl::drain_replica(std::size_t i, Ns now) {
  Deploy& d = fleet.deploys[static_cast<std::size_t>(fleet.replica_deploy[i])];
  fleet.slots[i].phase = Phase::kDraining;
  if (fleet.replica_up[i]) {
    fleet.replica_up[i] = 0;
    --d.up;
  }
  maybe_off(i, now);
}

void PlanetSim::Impl::maybe_off(std::size_t i, Ns now) {
  if (fleet.slots[i].phase == Phase::kDraining && fleet.replicas[i].outstanding() == 0) power_down(i, now);
}

void PlanetSim::Impl::scale_to(int di, int n, Ns now) {
  Deploy& d = fleet.deploys[static_cast<std::size_t>(di)];
  n = std::clamp(n, 0, d.count);
  std::vector<std::size_t> starting, ready;
  for (int i = d.first; i < d.first + d.count; ++i) {
    const Phase p = fleet.slots[static_cast<std::size_t>(i)].phase;
    if (p == Phase::kPulling || p == Phase::kLoading) starting.push_back(static_cast<std::size_t>(i));
    if (p == Phase::kReady) ready.push_back(static_cast<std::size_t>(i));
  }
  int current = static_cast<int>(starting.size() + ready.size());
  while (current < n && start_replica(di, now)) ++current;
  // Fewer: cancel the latest starts first (their accelerators are free at once), then drain the
  // ready fleet.replicas holding the fewest requests; a draining replica finishes what it holds.
  std::sort(starting.begin(), starting.end(),
            [&](std::size_t a, std::size_t b) { return fleet.slots[a].requested > fleet.slots[b].requested; });
  for (std::size_t k = 0; current > n && k < starting.size(); ++k, --current) power_down(starting[k], now);
  std::stable_sort(ready.begin(), ready.end(), [&](std::size_t a, std::size_t b) {
    return fleet.replicas[a].outstanding() != fleet.replicas[b].outstanding() ? fleet.replicas[a].outstanding() < fleet.replicas[b].outstanding()
                                                                   : a > b;
  });
  for (std::size_t k = 0; current > n && k < ready.size(); ++k, --current) drain_replica(ready[k], now);
}

void PlanetSim::Impl::apply_cap(int di, Ns now) {
  Deploy& d = fleet.deploys[static_cast<std::size_t>(di)];
  // The lowest cap the board takes: above its idle draw.
  const int floor_steps = static_cast<int>(std::floor(d.acc->idle_w / d.acc->tdp_w * kCapSteps)) + 1;
  const int steps = std::clamp(std::min(d.set_cap_steps, d.budget_cap_steps), floor_steps, kCapSteps);
  d.budget_cap_steps = std::max(d.budget_cap_steps, floor_steps);
  if (steps == d.cap_steps) return;
  d.cap_steps = steps;
  d.min_cap_steps = std::min(d.min_cap_steps, steps);
  const auto m = model_at(d, steps);
  for (int i = d.first; i < d.first + d.count; ++i) {
    const auto k = static_cast<std::size_t>(i);
    if (fleet.slots[k].phase == Phase::kOff) continue;
    fleet.replicas[k].set_step_model(m, now);
    sync(k);
  }
}

// ---- sampling ----------------------------------------------------------------------------------
void PlanetSim::Impl::fleet_clock(Ns now) {
  const Ns end = std::min(now, horizon);
  while (rec.next_second <= end) {
    for (std::size_t l = 0; l < w.links.size(); ++l) {
      double u = 0;
      for (int k = 0; k < 2; ++k) {
        const int dl = static_cast<int>(2 * l) + k;
        const double cap = net.fn.capacity(dl);
        if (cap > 0) u = std::max(u, net.fn.load(dl) / cap);
      }
      ++rec.link_hist[l][static_cast<std::size_t>(std::clamp(std::lround(u * 100), 0L, 100L))];
    }
    rec.next_second += kSecond;
  }
  while (rec.next_power <= end) {
    power_window_at(now);
    rec.next_power += rec.power_window;
  }
  while (rec.next_minute <= end) {
    for (std::size_t s = 0; s < w.sites.size(); ++s) {
      int ready = 0, starting = 0, draining = 0, gpus = 0, cap = kCapSteps;
      double it_w = 0, sat = 0, sat_gpus = 0;
      bool any = false;
      for (int d : fleet.site_deploy[s]) {
        if (d < 0) continue;
        const Deploy& dep = fleet.deploys[static_cast<std::size_t>(d)];
        any = true;
        for (int i = dep.first; i < dep.first + dep.count; ++i) {
          const Phase p = fleet.slots[static_cast<std::size_t>(i)].phase;
          const bool serving = p == Phase::kReady && fleet.replica_up[static_cast<std::size_t>(i)];
          ready += serving;
          if (serving) {
            const auto& rep = fleet.replicas[static_cast<std::size_t>(i)];
            sat += dep.tp * std::max(rep.kv_usage(), static_cast<double>(rep.running()) / cfg.engine.max_num_seqs);
            sat_gpus += dep.tp;
          }
          starting += p == Phase::kPulling || p == Phase::kLoading;
          draining += p == Phase::kDraining;
          it_w += fleet.replicas[static_cast<std::size_t>(i)].power_w();
        }
        gpus += dep.powered * dep.tp;
        cap = std::min(cap, dep.cap_steps);
      }
      if (!any) continue;
      res.fleet_rows.push_back({core::to_seconds(rec.next_minute), static_cast<int>(s), ready, starting, draining, gpus,
                                it_w / 1000, site_facility_kw(static_cast<int>(s)), site_budget_kw(static_cast<int>(s)),
                                static_cast<double>(cap) / kCapSteps, sat_gpus > 0 ? sat / sat_gpus : 0.0});
    }
    rec.next_minute += 60 * kSecond;
  }
}

// One power window: sample every site; above its budget the fleet lowers the GPU power caps of
// the site's deployments (in proportion to the excess), below 90% of it raises them a step.
void PlanetSim::Impl::power_window_at(Ns now) {
  for (std::size_t s = 0; s < w.sites.size(); ++s) {
    bool any = false;
    for (int d : fleet.site_deploy[s]) any |= d >= 0;
    if (!any) continue;
    auto& sp = fleet.site_power[s];
    const double kw = site_facility_kw(static_cast<int>(s));
    sp.last_kw = kw;
    sp.sum_kw += kw;
    sp.peak_kw = std::max(sp.peak_kw, kw);
    ++sp.samples;
    const double budget = site_budget_kw(static_cast<int>(s));
    if (budget <= 0) continue;
    int delta = 0;
    if (kw > budget) {
      ++sp.breach_windows;
      delta = -std::max(1, static_cast<int>(std::ceil((kw / budget - 1) * kCapSteps)));
    } else if (kw < 0.9 * budget) {
      delta = 1;
    }
    bool capped = false;
    for (int d : fleet.site_deploy[s]) {
      if (d < 0) continue;
      Deploy& dep = fleet.deploys[static_cast<std::size_t>(d)];
      if (delta != 0 && (delta < 0 ? dep.powered > 0 : dep.budget_cap_steps < kCapSteps)) {
        dep.budget_cap_steps = std::min(kCapSteps, dep.budget_cap_steps + delta);
        apply_cap(d, now);
      }
      capped |= dep.cap_steps < kCapSteps;
    }
    sp.capped_windows += capped;
  }
}

// ---- the control host ----------------------------------------------------------------------------
control::FleetView PlanetSim::Impl::observe(Ns now) {
  control::FleetView v;
  v.t_s = core::to_seconds(now);
  v.window_s = std::max(1e-9, core::to_seconds(now - rec.obs_since));
  for (std::size_t s = 0; s < w.sites.size(); ++s) {
    control::SiteState st;
    st.id = static_cast<int>(s);
    st.name = w.sites[s].id;
    st.up = fleet.site_up[s];
    st.power_kw = fleet.site_power[s].last_kw;
    st.budget_kw = site_budget_kw(static_cast<int>(s));
    st.carbon_g_per_kwh = w.sites[s].carbon_g_per_kwh;
    st.free_accelerators = fleet.free_accel[s];
    v.sites.push_back(std::move(st));
  }
  for (std::size_t k = 0; k < fleet.deploys.size(); ++k) {
    Deploy& d = fleet.deploys[k];
    control::DeploymentState ds;
    ds.id = static_cast<int>(k);
    ds.site = d.site;
    ds.model = models[static_cast<std::size_t>(d.model)];
    ds.accelerator = d.accel;
    ds.tp = d.tp;
    int off = 0;
    double kv = 0, it_w = 0;
    for (int i = d.first; i < d.first + d.count; ++i) {
      const auto r = static_cast<std::size_t>(i);
      const Phase p = fleet.slots[r].phase;
      it_w += fleet.replicas[r].power_w();
      if (p == Phase::kOff) ++off;
      if (p == Phase::kPulling || p == Phase::kLoading) ++ds.starting;
      if (p == Phase::kDraining) ++ds.draining;
      if (p == Phase::kReady && fleet.replica_up[r]) {
        ++ds.ready;
        ds.waiting += fleet.replicas[r].waiting();
        ds.running += fleet.replicas[r].running();
        kv += fleet.replicas[r].kv_usage();
      }
    }
    ds.kv_usage = ds.ready ? kv / ds.ready : 0;
    const int free = std::max(0, fleet.free_accel[static_cast<std::size_t>(d.site)][d.accel]) / d.tp;
    ds.max_replicas = d.count - off + std::min(off, free);
    ds.power_cap = static_cast<double>(d.cap_steps) / kCapSteps;
    ds.arrivals_per_s = static_cast<double>(d.routed_window) / v.window_s;
    ds.max_num_seqs = cfg.engine.max_num_seqs;
    ds.cold_start_s = d.last_cold_s;
    ds.power_kw = it_w / 1000;
    if (d.routed_window > 0) {
      ds.mean_prompt_tokens = d.prompt_window / static_cast<double>(d.routed_window);
      ds.mean_output_tokens = d.output_window / static_cast<double>(d.routed_window);
      ds.capacity_rps = model::sustained_rps(*model_at(d, d.cap_steps), ds.mean_prompt_tokens, ds.mean_output_tokens,
                                             cfg.engine.max_num_seqs);
    }
    d.routed_window = 0;
    d.prompt_window = d.output_window = 0;
    v.deployments.push_back(std::move(ds));
  }
  for (std::size_t l = 0; l < w.links.size(); ++l) {
    control::LinkState ls;
    ls.id = static_cast<int>(l);
    ls.a = w.links[l].a;
    ls.b = w.links[l].b;
    ls.capacity_bytes_s = net.fn.capacity(static_cast<int>(2 * l));
    const double ab = net.fn.load(static_cast<int>(2 * l)), ba = net.fn.load(static_cast<int>(2 * l + 1));
    ls.carried_bytes_s = std::max(ab, ba);
    v.links.push_back(ls);
  }
  // By class, on each link's busier way: the twin's flows and their rates now.
  for (std::size_t id = 0; id < net.flows.size(); ++id) {
    const Flow& f = net.flows[id];
    if (!f.alive || f.cls < 0 || f.cls >= 5) continue;
    const double rate = net.fn.rate(static_cast<int>(id));
    for (int dl : f.links) {
      if (dl >= net.metro_link0) continue;
      auto& ls = v.links[static_cast<std::size_t>(dl / 2)];
      const bool busier = (dl % 2 == 0) == (net.fn.load(dl - dl % 2) >= net.fn.load(dl - dl % 2 + 1));
      if (busier) ls.carried_by_class[static_cast<std::size_t>(f.cls)] += rate;
    }
  }
  for (std::size_t g = 0; g < rec.groups.size(); ++g)
    for (int p = 0; p < control::kPriorities; ++p) {
      const std::size_t k = g * control::kPriorities + static_cast<std::size_t>(p);
      if (rec.obs_arrivals[k] == 0 && rec.obs_ttft_n[k] == 0) continue;
      v.demand.push_back({rec.groups[g], p, static_cast<double>(rec.obs_arrivals[k]) / v.window_s,
                          rec.obs_ttft_n[k] ? rec.obs_ttft_sum[k] / static_cast<double>(rec.obs_ttft_n[k]) : 0});
      rec.obs_arrivals[k] = 0;
      rec.obs_ttft_sum[k] = 0;
      rec.obs_ttft_n[k] = 0;
    }
  rec.obs_since = now;
  return v;
}

void PlanetSim::Impl::apply(const control::Decisions& dec, Ns now) {
  const auto deploy_ok = [&](int d) { return d >= 0 && static_cast<std::size_t>(d) < fleet.deploys.size(); };
  for (const auto& s : dec.scale)
    if (deploy_ok(s.deployment)) scale_to(s.deployment, s.replicas, now);
  for (const auto& c : dec.power_caps) {
    if (!deploy_ok(c.deployment) || !(c.cap > 0)) continue;
    fleet.deploys[static_cast<std::size_t>(c.deployment)].set_cap_steps =
        std::clamp(static_cast<int>(std::lround(std::min(1.0, c.cap) * kCapSteps)), 1, kCapSteps);
    apply_cap(c.deployment, now);
  }
  for (const auto& p : dec.pair_limits) {
    const auto key = std::make_tuple(p.src, p.dst, p.link_class);
    if (p.bytes_s < 0) net.pair_limit.erase(key);
    else net.pair_limit[key] = std::max(1.0, p.bytes_s);
    rebound_pair(key, now);
  }
  for (const auto& p : dec.pair_reservations) {
    const auto key = std::make_tuple(p.src, p.dst, p.link_class);
    if (p.bytes_s <= 0) net.pair_reserve.erase(key);
    else net.pair_reserve[key] = p.bytes_s;
    if (net.te_mode) request_te(now);
  }
  for (const auto& s : dec.shed)
    if (s.priority > 0 && s.priority < control::kPriorities) fleet.shed_level[static_cast<std::size_t>(s.priority)] = s.level;
  for (const auto& r : dec.route_weights)
    if (deploy_ok(r.deployment)) fleet.deploys[static_cast<std::size_t>(r.deployment)].route_weight = std::max(0.0, r.weight);
}

void PlanetSim::Impl::control_tick(Ns now) {
  control::Decisions d;
  controller->decide(observe(now), d);
  apply(d, now);
  ++res.control_ticks;
  const Ns next = now + core::from_seconds(controller->period_s());
  if (next <= horizon) q.push_kind(next, Ev::kControl);
}

// Per-class bounds on a site pair (fair mode): the limit shared equally by the pair's net.flows of
// that class; te mode bounds net.flows by their aggregates' allocations instead.
void PlanetSim::Impl::rebound_pair(const std::tuple<int, int, int>& key, Ns now) {
  if (net.te_mode) {  // the next solve caps the aggregate's demand at the limit
    request_te(now);
    return;
  }
  auto& ids = net.pair_flows[key];
  ids.clear();
  const auto [src, dst, cls] = key;
  for (std::size_t id = 0; id < net.flows.size(); ++id) {
    const Flow& f = net.flows[id];
    if (f.alive && f.src == src && f.dst == dst && f.cls == cls) ids.push_back(static_cast<int>(id));
  }
  const auto it = net.pair_limit.find(key);
  for (int id : ids)
    net.fn.set_bound(id, it == net.pair_limit.end() ? net::FlowNetwork::kUnbounded
                                            : it->second / static_cast<double>(ids.size()));
  if (it == net.pair_limit.end()) net.pair_flows.erase(key);
}

void PlanetSim::Impl::finish_fleet(Ns end) {
  fleet_clock(end);
  for (auto& d : fleet.deploys) set_powered(d, 0, end);
  std::vector<double> energy(fleet.deploys.size(), 0);
  for (std::size_t r = 0; r < fleet.replicas.size(); ++r) {
    fleet.replicas[r].finish(end);
    energy[static_cast<std::size_t>(fleet.replica_deploy[r])] += fleet.replicas[r].stats().energy_j;
  }
  for (const auto& d : fleet.deploys)
    res.sites[static_cast<std::size_t>(d.site)].host_energy_j += d.gpu_s * d.host_w;
  for (std::size_t k = 0; k < fleet.deploys.size(); ++k) {
    const Deploy& d = fleet.deploys[k];
    DeploymentStats st;
    st.site = w.sites[static_cast<std::size_t>(d.site)].id;
    st.model = models[static_cast<std::size_t>(d.model)];
    st.accelerator = d.accel;
    st.tp = d.tp;
    st.nominal = d.nominal;
    st.slots = d.count;
    st.peak_ready = d.peak_ready;
    st.starts = d.starts;
    st.stops = d.stops;
    st.refused = d.refused;
    st.refused_by = d.refused_by;
    st.gpu_hours = d.gpu_s / 3600;
    st.weight_bytes_moved = d.weight_bytes_moved;
    st.energy_j = energy[k];
    st.cold_pull = d.cold_pull;
    st.cold_load = d.cold_load;
    st.cold_total = d.cold_total;
    st.min_cap = static_cast<double>(d.min_cap_steps) / kCapSteps;
    st.rolled = d.rolled;
    st.version = d.version;
    res.deployments.push_back(std::move(st));
  }
  for (std::size_t s = 0; s < w.sites.size(); ++s) {
    const auto& sp = fleet.site_power[s];
    SitePowerStats ps;
    ps.windows = sp.samples;
    ps.mean_kw = sp.samples ? sp.sum_kw / static_cast<double>(sp.samples) : 0;
    ps.peak_kw = sp.peak_kw;
    ps.budget_kw = w.sites[s].power_cap_kw;
    ps.breach_windows = sp.breach_windows;
    ps.capped_windows = sp.capped_windows;
    res.site_power.push_back(ps);
  }
}

}  // namespace infergrid::twin
