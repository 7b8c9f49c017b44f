// The planet twin's fleet: replicas that start (weights pulled as a DCI flow, loaded, warmed)
// and drain, accelerator pools, power sampled per window with site budgets held by GPU power
// caps (the control host that drives it is planet_control.cpp).
#include "twin/planet_impl.hpp"

namespace infergrid::twin {

namespace {
constexpr Ns kSecond = core::kNsPerSec;
}

void PlanetSim::Impl::Fleet::init_fleet(const model::Catalog&) {
  const std::size_t S = sim.w.sites.size();
  has_weights.assign(S, std::vector<char>(sim.models.size(), 0));
  pulling.assign(S, std::vector<char>(sim.models.size(), 0));
  for (const auto& d : deploys)
    if (d.nominal > 0) has_weights[static_cast<std::size_t>(d.site)][static_cast<std::size_t>(d.model)] = 1;
  for (const auto& r : sim.w.repositories) has_weights[static_cast<std::size_t>(r.site)].assign(sim.models.size(), 1);
  site_power.assign(S, {});
  for (auto& d : deploys) d.powered = d.peak_ready = d.nominal;
  // Every sim.controller's parameters are checked, the selected one built.
  const auto params_of = [&](const std::string& name) {
    control::Params p;
    if (auto it = sim.w.control.find(name); it != sim.w.control.end()) p.insert(it->second.begin(), it->second.end());
    return p;
  };
  for (const auto& [name, params] : sim.w.control) {
    const auto line = sim.w.control_line.count(name) ? sim.w.control_line.at(name) : 0;
    try {
      control::make_controller(name, params_of(name), sim.cfg.seed);
    } catch (const core::InputError& e) {
      core::fail_input(sim.w.file, line, "control." + name, e.what());
    }
    for (const auto& [k, _] : params)
      if (const auto at = k.find('@'); at != std::string::npos &&
                                       std::find(sim.models.begin(), sim.models.end(), k.substr(at + 1)) == sim.models.end())
        core::fail_input(sim.w.file, line, "control." + name + "." + k, fmt::format("no site deploys '{}'", k.substr(at + 1)));
  }
  for (const auto& [k, _] : sim.cfg.control_params)
    if (const auto at = k.find('@'); at != std::string::npos &&
                                     std::find(sim.models.begin(), sim.models.end(), k.substr(at + 1)) == sim.models.end())
      core::fail_flag("control", fmt::format("'{}': no site deploys '{}'", k, k.substr(at + 1)));
  if (sim.cfg.controller_impl) {
    sim.controller = sim.cfg.controller_impl;
  } else {
    auto p = params_of(sim.cfg.controller);
    for (const auto& [k, v] : sim.cfg.control_params) p[k] = v;
    sim.controller = control::make_controller(sim.cfg.controller, p, sim.cfg.seed);
  }
  sim.res.controller = sim.controller->name();
  sim.rec.power_window = core::from_seconds(sim.w.fleet.power_window_s);
  sim.rec.next_power = sim.rec.power_window;
  sim.rec.next_second = kSecond;
  sim.rec.next_minute = 60 * kSecond;
  sim.rec.link_hist.assign(sim.w.links.size(), {});
  // Metro sim.rec.groups for the observed demand: the country (the metro itself where none is given).
  std::map<std::string, int> gi;
  for (const auto& m : sim.w.metros) {
    const std::string g = m.country.empty() ? m.name : m.country;
    const auto [it, fresh] = gi.try_emplace(g, static_cast<int>(sim.rec.groups.size()));
    if (fresh) sim.rec.groups.push_back(g);
    sim.rec.metro_group.push_back(it->second);
  }
  sim.rec.obs_arrivals.assign(sim.rec.groups.size() * control::kPriorities, 0);
  sim.rec.obs_ttft_sum.assign(sim.rec.groups.size() * control::kPriorities, 0);
  sim.rec.obs_ttft_n.assign(sim.rec.groups.size() * control::kPriorities, 0);
  sim.res.demand_groups = sim.rec.groups;
  sim.res.demand_minutes.assign(sim.rec.groups.size() * control::kPriorities, {});
  sim.res.demand_tokens.assign(sim.rec.groups.size() * control::kPriorities, {});
  // Per deployment: the step its classes' tightest TPOT allows, and what routers weigh, the
  // sustained rate of its model's mix there (the classes it serves, by share: prompt with retrieved
  // context and images, output).
  for (auto& d : deploys) {
    double share = 0, prompt = 0, output = 0, tpot_s = 0;
    for (std::size_t c = 0; c < sim.w.workload.classes.size(); ++c) {
      if (sim.class_model[c] != d.model) continue;
      const auto& tc = sim.w.workload.classes[c];
      share += tc.share;
      prompt += tc.share * (tc.prompt.mean() + tc.retrievals.mean() * tc.retrieval_tokens + tc.images.mean() * tc.tokens_per_image);
      output += tc.share * tc.output.mean();
      if (tc.slo_tpot_ms > 0 && (tpot_s == 0 || tc.slo_tpot_ms / 1000 < tpot_s)) tpot_s = tc.slo_tpot_ms / 1000;
    }
    if (tpot_s > 0) d.slo_step_s = tpot_s;
    if (share <= 0) continue;
    const auto r = model::sustained_rate(*model_at(d, kCapSteps), prompt / share, output / share, sim.cfg.engine.max_num_seqs,
                                         d.slo_step_s);
    d.service_rps = r.rps;
    d.batch_slots = r.batch;
    d.prefill_tok_s = r.prefill_tok_s;
  }
}

std::shared_ptr<const model::PerfModel> PlanetSim::Impl::Fleet::model_at(Deploy& d, int steps) {
  auto& m = d.by_cap[static_cast<std::size_t>(steps)];
  if (!m) m = std::make_shared<model::PerfModel>(*d.llm, *d.acc, d.tp_attn, static_cast<double>(steps) / kCapSteps, d.ep);
  return m;
}

double PlanetSim::Impl::Fleet::site_budget_kw(int site) const {
  return sim.w.sites[static_cast<std::size_t>(site)].power_cap_kw * site_power[static_cast<std::size_t>(site)].budget_factor;
}

// Facility draw now: every powered replica's accelerators (what their batch does) and hosts, x PUE.
double PlanetSim::Impl::Fleet::site_facility_kw(int site) const {
  double w_it = 0;
  double host = 0;
  for (int d : site_deploy[static_cast<std::size_t>(site)]) {
    if (d < 0) continue;
    const Deploy& dep = deploys[static_cast<std::size_t>(d)];
    for (int i = dep.first; i < dep.first + dep.count; ++i) w_it += replicas[static_cast<std::size_t>(i)].power_w();
    host += dep.powered * dep.tp * dep.host_w;
  }
  return (w_it + host) * sim.w.sites[static_cast<std::size_t>(site)].pue / 1000;
}

// What one more replica would add, drawing its decode power under the cap, host included.
double PlanetSim::Impl::Fleet::replica_facility_kw(const Deploy& d, int cap_steps) const {
  const double gpu_w = std::min(d.acc->decode_w, d.acc->tdp_w * cap_steps / kCapSteps);
  return (gpu_w + d.host_w) * d.tp * sim.w.sites[static_cast<std::size_t>(d.site)].pue / 1000;
}

void PlanetSim::Impl::Fleet::set_powered(Deploy& d, int delta, Ns now) {
  d.gpu_s += static_cast<double>(d.powered) * d.tp * core::to_seconds(now - d.powered_since);
  d.powered += delta;
  d.powered_since = now;
}

bool PlanetSim::Impl::Fleet::start_replica(int di, Ns now) {
  Deploy& d = deploys[static_cast<std::size_t>(di)];
  const auto site = static_cast<std::size_t>(d.site);
  const auto refuse = [&](const char* why) {
    ++d.refused;
    ++d.refused_by[why];
    return false;
  };
  if (!site_up[site]) return refuse("site down");
  int slot = -1;
  for (int i = d.first; i < d.first + d.count && slot < 0; ++i)
    if (slots[static_cast<std::size_t>(i)].phase == Phase::kOff) slot = i;
  int& free = free_accel[site][d.accel];
  if (slot < 0 || free < d.tp) return refuse("accelerator pool");
  const double budget = site_budget_kw(d.site);
  if (budget > 0) {
    // Replicas still starting draw idle power now but their decode draw once ready: count that.
    double projected = site_facility_kw(d.site) + replica_facility_kw(d, d.cap_steps);
    for (int e : site_deploy[site]) {
      if (e < 0) continue;
      const Deploy& o = deploys[static_cast<std::size_t>(e)];
      for (int k = o.first; k < o.first + o.count; ++k) {
        const Phase p = slots[static_cast<std::size_t>(k)].phase;
        if (p == Phase::kPulling || p == Phase::kLoading)
          projected += replica_facility_kw(o, o.cap_steps) -
                       (replicas[static_cast<std::size_t>(k)].power_w() + o.host_w * o.tp) *
                           sim.w.sites[site].pue / 1000;
      }
    }
    if (projected > budget) return refuse("power budget");
  }
  // Where the weights come from: this site's disk, else the nearest site or repository holding them.
  const auto model = static_cast<std::size_t>(d.model);
  int source = -1;
  if (!has_weights[site][model] && !pulling[site][model]) {
    double best = 1e300;
    for (std::size_t s = 0; s < sim.w.sites.size(); ++s) {
      if (s == site || !has_weights[s][model] || !site_up[s]) continue;
      const Route& rt = sim.net.route(static_cast<int>(s), d.site);
      if (rt.ok && rt.one_way_ms < best) best = rt.one_way_ms, source = static_cast<int>(s);
    }
    if (source < 0) return refuse("no reachable weights");
  }
  const auto i = static_cast<std::size_t>(slot);
  free -= d.tp;
  Slot& sl = slots[i];
  sl.phase = Phase::kPulling;
  sl.requested = now;
  sl.version = d.version;
  ++d.starts;
  replicas[i].power_on(now);
  replicas[i].set_step_model(model_at(d, d.cap_steps), now);
  set_powered(d, +1, now);
  if (has_weights[site][model]) {
    sl.pulled = now;
    begin_load(i, now);
  } else if (source >= 0) {
    // One pull per site and model: replicas starting meanwhile wait for the same bytes.
    // A real site pulls the weights once for all of its new replicas: at a 1:scale model, one
    // pull's share of a link 1/scale as wide (world.hpp).
    pulling[site][model] = 1;
    const double bytes = d.weight_bytes / sim.w.scale;
    sim.rec.count_kind("weights", bytes, true);
    d.weight_bytes_moved += bytes;
    sim.net.start_flow(sim.net.route(source, d.site).links, kClassSync, bytes, FlowKind::kWeights, di, source, d.site, now);
  }
  return true;
}

void PlanetSim::Impl::Fleet::weights_arrived(int di, Ns now) {
  Deploy& d = deploys[static_cast<std::size_t>(di)];
  const auto site = static_cast<std::size_t>(d.site), model = static_cast<std::size_t>(d.model);
  has_weights[site][model] = 1;
  pulling[site][model] = 0;
  // Every deployment of the model at this site may have replicas waiting for these bytes.
  for (std::size_t k = 0; k < deploys.size(); ++k) {
    const Deploy& e = deploys[k];
    if (e.site != d.site || e.model != d.model) continue;
    for (int i = e.first; i < e.first + e.count; ++i) {
      Slot& sl = slots[static_cast<std::size_t>(i)];
      if (sl.phase != Phase::kPulling) continue;
      sl.pulled = now;
      begin_load(static_cast<std::size_t>(i), now);
    }
  }
}

void PlanetSim::Impl::Fleet::begin_load(std::size_t i, Ns now) {
  const Deploy& d = deploys[static_cast<std::size_t>(replica_deploy[i])];
  Slot& sl = slots[i];
  sl.phase = Phase::kLoading;
  const double s = d.weight_bytes / (sim.w.fleet.load_gb_s * 1e9) + sim.w.fleet.warmup_s;
  sim.q.push_kind(now + core::from_seconds(s), Ev::kLoaded, static_cast<std::int32_t>(i), sl.gen);
}

void PlanetSim::Impl::Fleet::loaded(std::size_t i, Ns now) {
  Deploy& d = deploys[static_cast<std::size_t>(replica_deploy[i])];
  Slot& sl = slots[i];
  sl.phase = Phase::kReady;
  if (!sl.restart) {  // a cold start's phases; a reload after an outage is counted apart
    d.cold_pull.add(core::to_seconds(sl.pulled - sl.requested));
    d.cold_load.add(core::to_seconds(now - sl.pulled));
    d.cold_total.add(core::to_seconds(now - sl.requested));
    d.last_cold_s = core::to_seconds(now - sl.requested);
  }
  sl.restart = false;
  if (site_up[static_cast<std::size_t>(d.site)]) {
    replica_up[i] = 1;
    ++d.up;
    reindex(i);
    d.peak_ready = std::max(d.peak_ready, d.up);
  }
  if (d.version > 0) roll_step(replica_deploy[i], now);  // a rolling update goes on
  // Other sites' rolls of this model may have waited for a replica to be ready here.
  for (int e : model_deploys[static_cast<std::size_t>(d.model)])
    if (e != replica_deploy[i] && deploys[static_cast<std::size_t>(e)].version > 0) roll_step(e, now);
}

void PlanetSim::Impl::Fleet::synced(std::size_t k, Ns now) {
  const auto [ev, site] = sim.net.sync_of[k];
  const auto& e = sim.w.events[static_cast<std::size_t>(ev)];
  if (!e.roll) return;
  for (std::size_t m = 0; m < sim.models.size(); ++m) {
    if (sim.models[m] != e.model) continue;
    has_weights[static_cast<std::size_t>(site)][m] = 1;
    const int d = site_deploy[static_cast<std::size_t>(site)][m];
    if (d < 0) continue;
    Deploy& dep = deploys[static_cast<std::size_t>(d)];
    ++dep.version;
    dep.roll_size = 0;
    for (int k = dep.first; k < dep.first + dep.count; ++k)
      dep.roll_size += slots[static_cast<std::size_t>(k)].phase == Phase::kReady;
    roll_step(d, now);
  }
}

// Rolling to the deployment's version, keeping roll_size replicas: with room, one new replica is
// started (surge) and, once ready, one old one drains; without room, an old one drains first and
// a new one starts on its accelerators. One step at a time; done when no old replica is left.
void PlanetSim::Impl::Fleet::roll_step(int di, Ns now) {
  Deploy& d = deploys[static_cast<std::size_t>(di)];
  if (d.version == 0) return;
  int ready = 0, starting = 0, draining_old = 0;
  std::size_t old = 0;
  bool any_old = false, off_slot = false;
  for (int k = d.first; k < d.first + d.count; ++k) {
    const auto j = static_cast<std::size_t>(k);
    const Phase p = slots[j].phase;
    const bool is_old = slots[j].version < d.version;
    ready += p == Phase::kReady;
    starting += p == Phase::kPulling || p == Phase::kLoading;
    draining_old += p == Phase::kDraining && is_old;
    off_slot |= p == Phase::kOff;
    if (p == Phase::kReady && is_old && (!any_old || replicas[j].outstanding() < replicas[old].outstanding()))
      old = j, any_old = true;
  }
  if (starting > 0 || draining_old > 0) return;
  if (ready > d.roll_size && any_old) {  // a new one is ready: an old one makes way
    drain_replica(old, now);
    return;
  }
  if (!any_old && ready >= d.roll_size) return;  // done
  const bool room = off_slot && free_accel[static_cast<std::size_t>(d.site)][d.accel] >= d.tp;
  if (room && start_replica(di, now)) {
    ++d.rolled;
    return;
  }
  if (!any_old) return;
  // No room: one fewer first, its accelerators start the next one; but never the model's last
  // serving replica anywhere (sites rolling at once take turns: a replica ready elsewhere first).
  if (d.up <= 1) {
    bool elsewhere = false;
    for (int e : model_deploys[static_cast<std::size_t>(d.model)])
      elsewhere |= e != di && deploys[static_cast<std::size_t>(e)].up > 0 &&
                   site_up[static_cast<std::size_t>(deploys[static_cast<std::size_t>(e)].site)];
    if (!elsewhere) return;  // retried when a replica of the model becomes ready
  }
  drain_replica(old, now);
}

void PlanetSim::Impl::Fleet::power_down(std::size_t i, Ns now) {
  Deploy& d = deploys[static_cast<std::size_t>(replica_deploy[i])];
  Slot& sl = slots[i];
  replicas[i].power_off(now);
  sl.phase = Phase::kOff;
  ++sl.gen;
  free_accel[static_cast<std::size_t>(d.site)][d.accel] += d.tp;
  set_powered(d, -1, now);
  ++d.stops;
  if (d.version > 0) roll_step(replica_deploy[i], now);
}

void PlanetSim::Impl::Fleet::drain_replica(std::size_t i, Ns now) {
  Deploy& d = deploys[static_cast<std::size_t>(replica_deploy[i])];
  slots[i].phase = Phase::kDraining;
  if (replica_up[i]) {
    replica_up[i] = 0;
    --d.up;
    reindex(i);
  }
  maybe_off(i, now);
}

void PlanetSim::Impl::Fleet::maybe_off(std::size_t i, Ns now) {
  if (slots[i].phase == Phase::kDraining && replicas[i].outstanding() == 0) power_down(i, now);
}

void PlanetSim::Impl::Fleet::scale_to(int di, int n, Ns now) {
  Deploy& d = deploys[static_cast<std::size_t>(di)];
  n = std::clamp(n, 0, d.count);
  std::vector<std::size_t> starting, ready;
  for (int i = d.first; i < d.first + d.count; ++i) {
    const Phase p = slots[static_cast<std::size_t>(i)].phase;
    if (p == Phase::kPulling || p == Phase::kLoading) starting.push_back(static_cast<std::size_t>(i));
    if (p == Phase::kReady) ready.push_back(static_cast<std::size_t>(i));
  }
  int current = static_cast<int>(starting.size() + ready.size());
  while (current < n && start_replica(di, now)) ++current;
  // Fewer: cancel the latest starts first (their accelerators are free at once), then drain the
  // ready replicas holding the fewest requests; a draining replica finishes what it holds.
  std::sort(starting.begin(), starting.end(),
            [&](std::size_t a, std::size_t b) { return slots[a].requested > slots[b].requested; });
  for (std::size_t k = 0; current > n && k < starting.size(); ++k, --current) power_down(starting[k], now);
  std::stable_sort(ready.begin(), ready.end(), [&](std::size_t a, std::size_t b) {
    return replicas[a].outstanding() != replicas[b].outstanding() ? replicas[a].outstanding() < replicas[b].outstanding()
                                                                   : a > b;
  });
  for (std::size_t k = 0; current > n && k < ready.size(); ++k, --current) drain_replica(ready[k], now);
}

void PlanetSim::Impl::Fleet::apply_cap(int di, Ns now) {
  Deploy& d = deploys[static_cast<std::size_t>(di)];
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
    if (slots[k].phase == Phase::kOff) continue;
    replicas[k].set_step_model(m, now);
    sync(k);
  }
}

void PlanetSim::Impl::Fleet::apply_schedule(int di, Ns now) {
  const Deploy& d = deploys[static_cast<std::size_t>(di)];
  for (int i = d.first; i < d.first + d.count; ++i) {
    const auto k = static_cast<std::size_t>(i);
    replicas[k].set_schedule(d.step_target_s, d.prefill_reserve, d.priority, now);
    if (slots[k].phase != Phase::kOff) sync(k);
  }
}

// ---- sampling ----------------------------------------------------------------------------------
void PlanetSim::Impl::Fleet::fleet_clock(Ns now) {
  const Ns end = std::min(now, sim.horizon);
  while (sim.rec.next_second <= end) {
    const double second_s = core::to_seconds(sim.rec.next_second);
    // Each way's bytes over the second that ends here, at its capacity now: the busier way.
    for (std::size_t l = 0; l < sim.w.links.size(); ++l) {
      double u = 0;
      for (int k = 0; k < 2; ++k) {
        const int dl = static_cast<int>(2 * l) + k;
        const double bytes = sim.net.dlink_bytes_at(dl, sim.rec.next_second);
        const double carried = bytes - sim.net.dlink_seen[static_cast<std::size_t>(dl)];
        sim.net.dlink_seen[static_cast<std::size_t>(dl)] = bytes;
        const double cap = sim.net.fn.capacity(dl);
        // Background bulk copies take what the flows left of the second (planet_bulk.cpp).
        const double bulk = sim.bulk.on ? sim.bulk.second(dl, second_s, carried, cap) : 0;
        if (cap > 0) u = std::max(u, (carried + bulk) / cap);
      }
      ++sim.rec.link_hist[l][static_cast<std::size_t>(std::clamp(std::lround(u * 100), 0L, 100L))];
    }
    sim.rec.next_second += kSecond;
  }
  while (sim.rec.next_power <= end) {
    power_window_at(now);
    sim.rec.next_power += sim.rec.power_window;
  }
  while (sim.rec.next_minute <= end) {
    for (std::size_t s = 0; s < sim.w.sites.size(); ++s) {
      int ready = 0, starting = 0, draining = 0, gpus = 0, cap = kCapSteps;
      double it_w = 0, sat = 0, sat_gpus = 0;
      bool any = false;
      for (int d : site_deploy[s]) {
        if (d < 0) continue;
        Deploy& dep = deploys[static_cast<std::size_t>(d)];
        any = true;
        double dep_sat = 0;
        int dep_serving = 0;
        for (int i = dep.first; i < dep.first + dep.count; ++i) {
          const Phase p = slots[static_cast<std::size_t>(i)].phase;
          const bool serving = p == Phase::kReady && replica_up[static_cast<std::size_t>(i)];
          ready += serving;
          if (serving) {
            const auto& rep = replicas[static_cast<std::size_t>(i)];
            const double x = std::max(rep.kv_usage(), static_cast<double>(rep.running()) / sim.cfg.engine.max_num_seqs);
            sat += dep.tp * x;
            sat_gpus += dep.tp;
            dep_sat += x;
            ++dep_serving;
          }
          starting += p == Phase::kPulling || p == Phase::kLoading;
          draining += p == Phase::kDraining;
          it_w += replicas[static_cast<std::size_t>(i)].power_w();
        }
        dep.saturation.push_back(dep_serving > 0 ? dep_sat / dep_serving : 0.0);
        gpus += dep.powered * dep.tp;
        cap = std::min(cap, dep.cap_steps);
      }
      if (!any) continue;
      sim.res.fleet_rows.push_back({core::to_seconds(sim.rec.next_minute), static_cast<int>(s), ready, starting, draining, gpus,
                                it_w / 1000, site_facility_kw(static_cast<int>(s)), site_budget_kw(static_cast<int>(s)),
                                static_cast<double>(cap) / kCapSteps, sat_gpus > 0 ? sat / sat_gpus : 0.0});
    }
    sim.rec.next_minute += 60 * kSecond;
  }
}

// One power window: sample every site; above its budget the fleet lowers the GPU power caps of
// the site's deployments (in proportion to the excess), below 90% of it raises them a step.
void PlanetSim::Impl::Fleet::power_window_at(Ns now) {
  for (std::size_t s = 0; s < sim.w.sites.size(); ++s) {
    bool any = false;
    for (int d : site_deploy[s]) any |= d >= 0;
    if (!any) continue;
    auto& sp = site_power[s];
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
    for (int d : site_deploy[s]) {
      if (d < 0) continue;
      Deploy& dep = deploys[static_cast<std::size_t>(d)];
      if (delta != 0 && (delta < 0 ? dep.powered > 0 : dep.budget_cap_steps < kCapSteps)) {
        dep.budget_cap_steps = std::min(kCapSteps, dep.budget_cap_steps + delta);
        apply_cap(d, now);
      }
      capped |= dep.cap_steps < kCapSteps;
    }
    sp.capped_windows += capped;
  }
}

void PlanetSim::Impl::Fleet::finish_fleet(Ns end) {
  fleet_clock(end);
  for (auto& d : deploys) set_powered(d, 0, end);
  std::vector<double> energy(deploys.size(), 0);
  for (std::size_t r = 0; r < replicas.size(); ++r) {
    replicas[r].finish(end);
    energy[static_cast<std::size_t>(replica_deploy[r])] += replicas[r].stats().energy_j;
  }
  for (const auto& d : deploys)
    sim.res.sites[static_cast<std::size_t>(d.site)].host_energy_j += d.gpu_s * d.host_w;
  for (std::size_t k = 0; k < deploys.size(); ++k) {
    const Deploy& d = deploys[k];
    DeploymentStats st;
    st.site = sim.w.sites[static_cast<std::size_t>(d.site)].id;
    st.model = sim.models[static_cast<std::size_t>(d.model)];
    st.accelerator = d.accel;
    st.tp = d.tp_attn;
    st.ep = d.ep;
    st.nominal = d.nominal;
    st.slots = d.count;
    st.peak_ready = d.peak_ready;
    st.starts = d.starts;
    st.stops = d.stops;
    st.restarts = d.restarts;
    st.saturation = d.saturation;
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
    sim.res.deployments.push_back(std::move(st));
  }
  for (std::size_t s = 0; s < sim.w.sites.size(); ++s) {
    const auto& sp = site_power[s];
    SitePowerStats ps;
    ps.windows = sp.samples;
    ps.mean_kw = sp.samples ? sp.sum_kw / static_cast<double>(sp.samples) : 0;
    ps.peak_kw = sp.peak_kw;
    ps.budget_kw = sim.w.sites[s].power_cap_kw;
    ps.breach_windows = sp.breach_windows;
    ps.capped_windows = sp.capped_windows;
    sim.res.site_power.push_back(ps);
  }
}

// ---- a replica's events --------------------------------------------------------------------
void PlanetSim::Impl::Fleet::sync(std::size_t i) {
  const Ns t = replicas[i].next_event_time();
  if (t == scheduled[i]) return;
  scheduled[i] = t;
  ++generation[i];
  if (t != core::kNever) sim.q.push_kind(t, Ev::kReplica, static_cast<std::int32_t>(i), generation[i]);
}

void PlanetSim::Impl::Fleet::drain(std::size_t i) {
  auto& done = replicas[i].completions();
  for (const auto& c : done) sim.demand.complete(c);
  done.clear();
}

void PlanetSim::Impl::Fleet::build_load_trees(int from) {
  load_tree.assign(deploys.size(), {});
  for (std::size_t d = 0; d < deploys.size(); ++d) {
    auto& dep = deploys[d];
    dep.indexed = dep.count >= from;
    if (!dep.indexed) continue;
    std::size_t size = 1;
    while (size < static_cast<std::size_t>(dep.count)) size *= 2;
    auto& t = load_tree[d];
    t.assign(2 * size, {kDown, 0});
    for (std::size_t j = 0; j < size; ++j) t[size + j].second = static_cast<int>(j);
    for (std::size_t n = size - 1; n >= 1; --n) t[n] = std::min(t[2 * n], t[2 * n + 1]);
  }
  for (std::size_t i = 0; i < replicas.size(); ++i) reindex(i);
}

void PlanetSim::Impl::Fleet::reindex(std::size_t i) {
  const auto d = static_cast<std::size_t>(replica_deploy[i]);
  if (!deploys[d].indexed) return;
  auto& t = load_tree[d];
  std::size_t n = t.size() / 2 + (i - static_cast<std::size_t>(deploys[d].first));
  const int want = replica_up[i] ? replicas[i].outstanding() : kDown;
  if (t[n].first == want) return;
  t[n].first = want;
  for (n /= 2; n >= 1; n /= 2) {
    const auto m = std::min(t[2 * n], t[2 * n + 1]);
    if (t[n] == m) break;  // nothing above changes
    t[n] = m;
  }
}

}  // namespace infergrid::twin
