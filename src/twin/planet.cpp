// The planet twin: the wiring of its parts and the event loop.
#include "twin/planet_impl.hpp"

namespace infergrid::twin {

PlanetSim::Impl::Impl(const world::World& world, const model::Catalog& catalog, const PlanetConfig& c)
    : w(world), cfg(c) {
  cfg.engine.enable_prefix_caching = cfg.prefix_caching;
  cfg.engine.validate();
  if (!(cfg.hours > 0 && cfg.hours <= 24 * 365)) core::fail_flag("hours", "must be in (0, 8760]");
  if (!(cfg.scale > 0)) core::fail_flag("scale", "must be positive");
  if (cfg.max_attempts < 1) core::fail_flag("max-attempts", "must be at least 1");
  horizon = core::from_seconds(cfg.hours * 3600);
  demand.router = control::make_site_router(cfg.router, cfg.seed);
  if (cfg.bandwidth != "fair" && cfg.bandwidth != "te") core::fail_flag("bandwidth", "must be fair or te");
  if (cfg.bulk_load > 1) core::fail_flag("bulk-load", "must be a share of capacity, at most 1");
  net.te_mode = cfg.bandwidth == "te";
  if (net.te_mode && !(cfg.te_interval_s > 0 && cfg.te_horizon_s > 0 && cfg.te_paths >= 1))
    core::fail_flag("bandwidth", "te needs a positive interval, horizon and path count");
  demand.router_needs_detail = cfg.router == "llm-d" || cfg.router == "infergrid" || cfg.router == "infergrid-green";
  demand.router_picks_pods = cfg.router == "llm-d";
  const std::size_t S = w.sites.size();
  // Models and deployments.
  auto model_index = [&](const std::string& m) {
    for (std::size_t i = 0; i < models.size(); ++i)
      if (models[i] == m) return static_cast<int>(i);
    models.push_back(m);
    return static_cast<int>(models.size() - 1);
  };
  for (const auto& cl : w.workload.classes) class_model.push_back(model_index(cl.model));
  fleet.site_deploy.assign(S, {});
  fleet.free_accel.assign(S, {});
  for (std::size_t s = 0; s < S; ++s) {
    // The site's pool: what its deployments do not hold at the start is free for starts.
    auto& free = fleet.free_accel[s];
    free = w.sites[s].accelerators;
    for (const auto& d : w.sites[s].deployments) free[d.accelerator] -= d.gpus() * d.replicas;
    for (const auto& d : w.sites[s].deployments) {
      const int m = model_index(d.model);
      if (fleet.site_deploy[s].size() < models.size()) fleet.site_deploy[s].resize(models.size(), -1);
      const int spare = std::max(0, free[d.accelerator]) / d.gpus();
      if (d.replicas == 0 && spare == 0) continue;
      if (fleet.site_deploy[s][static_cast<std::size_t>(m)] >= 0)
        core::fail_input(w.file, 0, "deployments",
                         fmt::format("site '{}' fleet.deploys '{}' twice", w.sites[s].id, d.model));
      auto pm = std::make_shared<model::PerfModel>(catalog.llm(d.model), catalog.accelerator(d.accelerator), d.tp, 1.0, d.ep);
      const auto kv = cfg.engine.kv_capacity_tokens > 0
                          ? cfg.engine.kv_capacity_tokens
                          : static_cast<std::int64_t>(pm->kv_capacity_tokens(cfg.engine.gpu_memory_utilization));
      Deploy dep;
      dep.site = static_cast<int>(s);
      dep.model = m;
      dep.first = static_cast<int>(fleet.replicas.size());
      dep.count = d.replicas + spare;  // slots: the declared replicas, then what the pool could add
      dep.up = d.replicas;
      dep.nominal = d.replicas;
      dep.accel = d.accelerator;
      dep.tp = d.gpus();
      dep.tp_attn = d.tp;
      dep.ep = d.ep;
      dep.llm = std::make_shared<const model::LlmModel>(catalog.llm(d.model));
      dep.acc = std::make_shared<const model::Accelerator>(catalog.accelerator(d.accelerator));
      dep.host_w = w.fleet.host_w_per_gpu >= 0 ? w.fleet.host_w_per_gpu : dep.acc->host_w;
      dep.weight_bytes = dep.llm->params() * dep.llm->weight_bytes_per_param;
      dep.by_cap[kCapSteps] = pm;
      dep.decode_site = d.decode_site;
      engine::EngineConfig ecfg = cfg.engine;
      const double host_gb = cfg.kv_host_gb_per_gpu >= 0 ? cfg.kv_host_gb_per_gpu : w.fleet.kv_host_gb_per_gpu;
      if (host_gb > 0 && ecfg.enable_prefix_caching)
        ecfg.host_kv_tokens = static_cast<std::int64_t>(host_gb * 1e9 * d.gpus() / catalog.llm(d.model).kv_bytes_per_token());
      const double ssd_gb = cfg.kv_ssd_gb_per_gpu >= 0 ? cfg.kv_ssd_gb_per_gpu : w.fleet.kv_ssd_gb_per_gpu;
      if (ssd_gb > 0 && ecfg.enable_prefix_caching)
        ecfg.ssd_kv_tokens = static_cast<std::int64_t>(ssd_gb * 1e9 * d.gpus() / catalog.llm(d.model).kv_bytes_per_token());
      for (int r = 0; r < dep.count; ++r) {
        fleet.replicas.emplace_back(static_cast<int>(fleet.replicas.size()), pm, ecfg, kv);
        fleet.replica_deploy.push_back(static_cast<int>(fleet.deploys.size()));
        Slot sl;
        if (r >= d.replicas) {
          sl.phase = Phase::kOff;
          fleet.replicas.back().power_off(0);
        }
        fleet.slots.push_back(sl);
      }
      fleet.site_deploy[s][static_cast<std::size_t>(m)] = static_cast<int>(fleet.deploys.size());
      fleet.deploys.push_back(dep);
    }
  }
  for (auto& v : fleet.site_deploy) v.resize(models.size(), -1);
  for (auto& dep : fleet.deploys)  // the world checked that the decode site deploys the model
    if (dep.decode_site >= 0)
      dep.decode_deploy = fleet.site_deploy[static_cast<std::size_t>(dep.decode_site)][static_cast<std::size_t>(dep.model)];
  fleet.model_deploys.assign(models.size(), {});
  for (std::size_t d = 0; d < fleet.deploys.size(); ++d)
    fleet.model_deploys[static_cast<std::size_t>(fleet.deploys[d].model)].push_back(static_cast<int>(d));
  fleet.replica_up.assign(fleet.replicas.size(), 1);
  for (std::size_t i = 0; i < fleet.replicas.size(); ++i) fleet.replica_up[i] = fleet.slots[i].phase == Phase::kReady;
  fleet.build_load_trees(cfg.index_replicas_from);
  fleet.scheduled.assign(fleet.replicas.size(), core::kNever);
  fleet.host_load_free.assign(fleet.replicas.size(), 0);
  fleet.generation.assign(fleet.replicas.size(), 0);
  fleet.replica_energy_seen.assign(fleet.replicas.size(), 0);
  fleet.replica_busy_seen.assign(fleet.replicas.size(), 0);
  fleet.replica_compute_seen.assign(fleet.replicas.size(), 0);
  fleet.site_up.assign(S, 1);

  // The network: two directed links per DCI link, then one access link per metro.
  for (const auto& l : w.links) {
    net.fn.add_link(l.gbps * 1e9 / 8);
    net.fn.add_link(l.gbps * 1e9 / 8);
    net.dlink_capacity.push_back(l.gbps * 1e9 / 8);
    net.dlink_capacity.push_back(l.gbps * 1e9 / 8);
  }
  net.link_factor.assign(w.links.size(), 1.0);
  net.metro_link0 = static_cast<int>(net.fn.link_count());
  for (const auto& m : w.metros) net.fn.add_link(m.uplink_gbps * 1e9 / 8);
  net.dlink_bucket_bytes.assign(2 * w.links.size(), 0);
  for (auto* v : {&net.dlink_settled, &net.dlink_rate_sum, &net.dlink_rate_last_sum, &net.dlink_seen})
    v->assign(2 * w.links.size(), 0);
  // User to site: the last mile, then the world's long-haul fiber (net/fiber.hpp).
  const net::FiberModel& fiber = net::FiberModel::builtin();
  net.user_rtt_ms.resize(w.metros.size() * S);
  for (std::size_t m = 0; m < w.metros.size(); ++m)
    for (std::size_t s = 0; s < S; ++s)
      net.user_rtt_ms[m * S + s] = w.metros[m].last_mile_ms + fiber.rtt_ms(w.metros[m].pos, w.sites[s].pos);
  // A metro's traffic enters the backbone at its nearest site; served elsewhere, its bytes cross
  // the DCI from there (docs/planet.md "Bytes").
  net.metro_entry.resize(w.metros.size());
  for (std::size_t m = 0; m < w.metros.size(); ++m)
    net.metro_entry[m] = static_cast<int>(std::min_element(net.user_rtt_ms.begin() + static_cast<std::ptrdiff_t>(m * S),
                                                           net.user_rtt_ms.begin() + static_cast<std::ptrdiff_t>((m + 1) * S)) -
                                          (net.user_rtt_ms.begin() + static_cast<std::ptrdiff_t>(m * S)));
  net.compute_routes();
  // Corpus shards and their holders.
  std::map<std::string, std::vector<int>> holders;
  for (std::size_t s = 0; s < S; ++s)
    for (const auto& sh : w.sites[s].shards) holders[sh].push_back(static_cast<int>(s));
  for (auto& [_, v] : holders) net.shard_holders.push_back(v);

  for (const auto& m : w.metros) demand.population += m.demand_weight;
  demand.metro_surge.assign(w.metros.size(), 1.0);
  demand.metro_cum.assign(w.metros.size(), 0);
  demand.metro_sessions.assign(w.metros.size(), {});
  demand.metro_sessions_n.assign(w.metros.size(), 0);
  res.classes.resize(w.workload.classes.size());
  res.sites.resize(S);
  res.links.resize(w.links.size());
  bulk.init();
  res.metro_requests.assign(w.metros.size(), 0);
  res.metro_ttft_sum.assign(w.metros.size(), 0);
  res.metro_met_slo.assign(w.metros.size(), 0);
  {  // The scenario's event window (what the sweep's window_* columns measure).
    const double run_s = cfg.hours * 3600;
    double lo = run_s, hi = 0;
    for (const auto& e : w.events) {
      if (!e.from_scenario) continue;
      const double at = core::to_seconds(e.at);
      if (at >= run_s) continue;
      lo = std::min(lo, at);
      hi = std::max(hi, e.duration > 0 ? at + core::to_seconds(e.duration) + cfg.window_recovery_s : run_s);
    }
    res.window_start_s = lo;
    res.window_end_s = std::min(hi, run_s);
    window_lo = core::from_seconds(lo);
    window_hi = core::from_seconds(res.window_end_s);
  }
  fleet.init_fleet(catalog);
  rec.new_bucket(0);
  if (!cfg.requests_csv.empty()) {
    rec.csv = std::fopen(cfg.requests_csv.c_str(), "wb");
    if (!rec.csv) core::fail_input(cfg.requests_csv, 0, "", "cannot write");
    rec.csv_buf = "id,metro,class,site,status,reason,attempts,arrival_s,ttft_ms,tpot_ms,e2e_ms,network_ms,retrieval_ms,"
              "queue_ms,compute_ms,prompt_tokens,output_tokens\n";
  }
}

PlanetResult PlanetSim::Impl::run(const std::function<void(double, std::uint64_t)>& progress) {
  // Events of the simulated day only: after the horizon the run drains what is in flight, in the
  // state the day ended in, and ends with the last of it (GPU-hours and energy up to there).
  for (std::size_t i = 0; i < w.events.size(); ++i) {
    const auto& e = w.events[i];
    if (e.at >= horizon) continue;
    q.push_kind(e.at, Ev::kScenario, 0, static_cast<std::uint32_t>(2 * i));
    if (e.duration > 0 && e.kind != world::Event::Kind::kPublish && e.at + e.duration < horizon)
      q.push_kind(e.at + e.duration, Ev::kScenario, 0, static_cast<std::uint32_t>(2 * i + 1));
  }
  const Ns bucket_ns = core::from_seconds(cfg.bucket_s);
  q.push_kind(std::min(bucket_ns, horizon), Ev::kBucket);
  demand.window_end = 0;
  q.push_kind(0, Ev::kWindow);
  if (net.te_mode) q.push_kind(0, Ev::kTe, 0, 0);
  if (controller->period_s() > 0) q.push_kind(core::from_seconds(controller->period_s()), Ev::kControl);
  Ns now = 0;
  std::uint64_t next_progress = 1 << 16;
  while (!q.empty()) {
    const sim::Event ev = q.pop();
    if (ev.t > horizon + kDrainNs) break;  // the run ends at the last event it handled
    now = ev.t;
    ++res.events;
    fleet.fleet_clock(now);
    switch (static_cast<Ev>(ev.kind)) {
      case Ev::kReplica: {
        const auto i = static_cast<std::size_t>(ev.target);
        if (ev.generation != fleet.generation[i]) continue;
        fleet.scheduled[i] = core::kNever;
        fleet.replicas[i].advance(now);
        fleet.drain(i);
        fleet.reindex(i);
        fleet.sync(i);
        fleet.maybe_off(i, now);
        break;
      }
      case Ev::kFlow:
        if (ev.generation != net.flows[static_cast<std::size_t>(ev.target)].gen) continue;
        flow_done(ev.target, now);
        break;
      case Ev::kStep:
        if (demand.reqs[ev.generation].pending != now) continue;
        demand.reqs[ev.generation].pending = -1;
        demand.step(ev.generation, now);
        break;
      case Ev::kArrival:
        demand.arrive(now);
        demand.next_arrival(now);
        if (progress && res.arrived >= next_progress) {
          next_progress += 1 << 16;
          progress(core::to_seconds(now) / core::to_seconds(horizon), res.arrived);
        }
        break;
      case Ev::kWindow:
        if (now < horizon) {
          demand.recompute_demand(now);
          demand.window_end = std::min(now + kWindowNs, horizon);
          demand.next_arrival(now);
        }
        break;
      case Ev::kScenario:
        scen.scenario(ev.generation, now);
        break;
      case Ev::kTe:
        if (ev.generation == 0) {  // the periodic solve
          net.te_solve(now);
          if (now < horizon) q.push_kind(now + core::from_seconds(cfg.te_interval_s), Ev::kTe, 0, 0);
        } else if (net.te_dirty) {
          net.te_solve(now);
        } else {
          net.te_pending = false;
        }
        break;
      case Ev::kBucket:
        rec.close_bucket(now);
        if (now < horizon) q.push_kind(std::min(now + bucket_ns, horizon), Ev::kBucket);
        break;
      case Ev::kLoaded:
        if (ev.generation != fleet.slots[static_cast<std::size_t>(ev.target)].gen) continue;
        fleet.loaded(static_cast<std::size_t>(ev.target), now);
        break;
      case Ev::kControl:
        control_tick(now);
        break;
    }
    net.update_flows(now);
  }
  // Requests still in flight after the drain are counted, never dropped.
  std::vector<char> is_free(demand.reqs.size(), 0);
  for (auto s : demand.free_reqs) is_free[s] = 1;
  for (std::uint32_t slot = 0; slot < demand.reqs.size(); ++slot)
    if (!is_free[slot]) demand.lose(slot, "unfinished at end of run");
  res.end = now;
  fleet.finish_fleet(std::max(now, horizon));
  bulk.finish();
  for (auto& rep : fleet.replicas) rep.finish(std::max(now, horizon));
  if (rec.bucket_start < now) rec.close_bucket(now);
  for (std::size_t r = 0; r < fleet.replicas.size(); ++r)
    res.sites[static_cast<std::size_t>(fleet.deploys[static_cast<std::size_t>(fleet.replica_deploy[r])].site)].it_energy_j +=
        fleet.replicas[r].stats().energy_j;
  for (const auto& l : w.links) res.network_energy_j += 2 * l.transceiver_w * core::to_seconds(std::max(now, horizon));
  rec.flush_csv(true);
  if (progress) progress(1.0, res.arrived);
  return std::move(res);
}


PlanetSim::PlanetSim(const world::World& world, const model::Catalog& catalog, const PlanetConfig& cfg)
    : impl_(std::make_unique<Impl>(world, catalog, cfg)) {}
PlanetSim::~PlanetSim() = default;
PlanetResult PlanetSim::run(const std::function<void(double, std::uint64_t)>& progress) {
  return impl_->run(progress);
}


void PlanetSim::Impl::flow_done(int id, Ns now) {
  Flow& f = net.flows[static_cast<std::size_t>(id)];
  const FlowKind kind = f.kind;
  const int owner = f.owner, src = f.src, dst = f.dst;
  net.end_flow(id, now);
  if (kind == FlowKind::kWeights) {
    fleet.weights_arrived(owner, now);
    return;
  }
  if (kind == FlowKind::kSync) {
    if (--net.sync_parts[static_cast<std::size_t>(owner)] == 0) {
      res.staleness[static_cast<std::size_t>(owner)].ready_s = core::to_seconds(now);
      fleet.synced(static_cast<std::size_t>(owner), now);
    }
    return;
  }
  const auto slot = static_cast<std::uint32_t>(owner);
  Req& r = demand.reqs[slot];
  if (kind == FlowKind::kUpload) {
    const Ns one_way = core::from_seconds(r.one_way_ms / 1000);
    r.net_ns += now - r.step_start + one_way;
    r.stage = Stage::kAtSite;
    demand.step_at(slot, now + one_way);
  } else if (kind == FlowKind::kKv) {  // the request for it went out and the bytes came back
    demand.step_at(slot, now + core::from_seconds(2 * net.route(src, dst).one_way_ms / 1000));
  } else {
    const auto& tc = w.workload.classes[static_cast<std::size_t>(r.cls)];
    const Ns rtt = core::from_seconds(2 * net.route(src, dst).one_way_ms / 1000);
    demand.step_at(slot, now + rtt + core::from_seconds(tc.retrieval_compute_ms / 1000));
  }
}

}  // namespace infergrid::twin
