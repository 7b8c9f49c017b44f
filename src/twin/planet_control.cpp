// The planet twin as a control host: what the operator's monitoring sees (observe), carrying out
// a controller's decisions (apply), and the controller's period.
#include "twin/planet_impl.hpp"

namespace infergrid::twin {

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
    st.budget_kw = fleet.site_budget_kw(static_cast<int>(s));
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
    ds.slo_tpot_s = d.slo_step_s;
    ds.step_target_s = d.step_target_s;
    ds.power_kw = it_w / 1000;
    if (d.routed_window > 0) {
      ds.mean_prompt_tokens = d.prompt_window / static_cast<double>(d.routed_window);
      ds.mean_output_tokens = d.output_window / static_cast<double>(d.routed_window);
      // At the SLO: the decode step within the tightest TPOT bound of the classes this model serves.
      ds.capacity_rps = model::sustained_rps(*fleet.model_at(d, d.cap_steps), ds.mean_prompt_tokens, ds.mean_output_tokens,
                                             cfg.engine.max_num_seqs, d.step_target_s > 0 ? std::min(d.step_target_s, d.slo_step_s) : d.slo_step_s);
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
      if (!busier) continue;
      ls.carried_by_class[static_cast<std::size_t>(f.cls)] += rate;
      // Offered beyond what is carried: the bytes its flows still have to move (a sender's queue).
      ls.backlog_by_class[static_cast<std::size_t>(f.cls)] +=
          std::max(0.0, f.remaining - f.rate * core::to_seconds(now - f.last));
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
    if (deploy_ok(s.deployment)) fleet.scale_to(s.deployment, s.replicas, now);
  for (const auto& c : dec.power_caps) {
    if (!deploy_ok(c.deployment) || !(c.cap > 0)) continue;
    fleet.deploys[static_cast<std::size_t>(c.deployment)].set_cap_steps =
        std::clamp(static_cast<int>(std::lround(std::min(1.0, c.cap) * kCapSteps)), 1, kCapSteps);
    fleet.apply_cap(c.deployment, now);
  }
  for (const auto& p : dec.pair_limits) {
    const auto key = std::make_tuple(p.src, p.dst, p.link_class);
    if (p.bytes_s < 0) net.pair_limit.erase(key);
    else net.pair_limit[key] = std::max(1.0, p.bytes_s);
    net.rebound_pair(key, now);
  }
  for (const auto& p : dec.pair_reservations) {
    const auto key = std::make_tuple(p.src, p.dst, p.link_class);
    if (p.bytes_s <= 0) net.pair_reserve.erase(key);
    else net.pair_reserve[key] = p.bytes_s;
    if (net.te_mode) net.request_te(now);
  }
  for (const auto& s : dec.shed)
    if (s.priority > 0 && s.priority < control::kPriorities) fleet.shed_level[static_cast<std::size_t>(s.priority)] = s.level;
  for (const auto& r : dec.route_weights)
    if (deploy_ok(r.deployment)) fleet.deploys[static_cast<std::size_t>(r.deployment)].route_weight = std::max(0.0, r.weight);
  for (const auto& sc : dec.schedules) {
    if (!deploy_ok(sc.deployment) || !(sc.step_target_s < 3600)) continue;
    auto& d = fleet.deploys[static_cast<std::size_t>(sc.deployment)];
    const double target = sc.step_target_s > 0 ? sc.step_target_s : 0;
    const double reserve = std::clamp(sc.prefill_reserve, 0.0, 0.95);
    if (target == d.step_target_s && reserve == d.prefill_reserve && sc.priority == d.priority) continue;
    d.step_target_s = target;
    d.prefill_reserve = reserve;
    d.priority = sc.priority;
    fleet.apply_schedule(sc.deployment, now);
  }
}

void PlanetSim::Impl::control_tick(Ns now) {
  control::Decisions d;
  controller->decide(observe(now), d);
  apply(d, now);
  ++res.control_ticks;
  const Ns next = now + core::from_seconds(controller->period_s());
  if (next <= horizon) q.push_kind(next, Ev::kControl);
}

}  // namespace infergrid::twin
