// The planet twin's demand and the life of a request: arrival, routing, upload, retrieval, engine.
#include "twin/planet_impl.hpp"

namespace infergrid::twin {

// ---- requests ---------------------------------------------------------------------------------
std::uint32_t PlanetSim::Impl::Demand::alloc_req() {
  ++active;
  if (!free_reqs.empty()) {
    const auto i = free_reqs.back();
    free_reqs.pop_back();
    return i;
  }
  reqs.emplace_back();
  return static_cast<std::uint32_t>(reqs.size() - 1);
}

void PlanetSim::Impl::Demand::free_req(std::uint32_t slot) {
  reqs[slot].req.block_hashes = {};
  reqs[slot].pending = -1;
  free_reqs.push_back(slot);
  --active;
}

void PlanetSim::Impl::Demand::step_at(std::uint32_t slot, Ns t) {
  reqs[slot].pending = t;
  sim.q.push_kind(t, Ev::kStep, 0, slot);
}

// Refused with a reason (shed by its class's level, or too long for the KV cache); nothing is lost.
void PlanetSim::Impl::Demand::reject(std::uint32_t slot, const std::string& reason) {
  Req& r = reqs[slot];
  sim.rec.row(r, "rejected", reason, -1, -1, -1, -1, -1, 0);
  ++sim.res.rejected;
  auto& cs = sim.res.classes[static_cast<std::size_t>(r.cls)];
  ++cs.rejected;
  ++cs.rejected_by_reason[reason];
  free_req(slot);
}

void PlanetSim::Impl::Demand::lose(std::uint32_t slot, const std::string& reason) {
  Req& r = reqs[slot];
  sim.rec.row(r, "lost", reason, -1, -1, -1, -1, -1, 0);
  ++sim.res.lost;
  ++sim.res.lost_by_reason[reason];
  ++sim.res.classes[static_cast<std::size_t>(r.cls)].lost;
  ++sim.rec.bucket.lost;
  free_req(slot);
}

// The request's site failed it: back to the gateway, which notices after retry_detect_ms.
void PlanetSim::Impl::Demand::retry(std::uint32_t slot, Ns now, const char* reason) {
  Req& r = reqs[slot];
  if (r.deploy >= 0) --sim.fleet.deploys[static_cast<std::size_t>(r.deploy)].outstanding;
  r.deploy = -1;
  r.load_replica = -1;
  r.load_blocks = 0;
  ++r.attempts;
  ++sim.res.classes[static_cast<std::size_t>(r.cls)].retried;
  if (r.attempts >= sim.cfg.max_attempts) {
    lose(slot, reason);
    return;
  }
  r.stage = Stage::kRoute;
  const Ns t = now + core::from_seconds(sim.cfg.retry_detect_ms / 1000);
  r.retry_ns += t - now;
  step_at(slot, t);
}

void PlanetSim::Impl::Demand::arrive(Ns now) {
  const double u = rng_arrival.uniform() * total_rate;
  const auto m = static_cast<int>(std::upper_bound(metro_cum.begin(), metro_cum.end(), u) - metro_cum.begin());
  const int metro = std::min<int>(m, static_cast<int>(sim.w.metros.size()) - 1);
  const auto& classes = sim.w.workload.classes;
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
  r.gid = sim.res.arrived++;
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
  ++sim.res.classes[static_cast<std::size_t>(cls)].arrived;
  if (sim.in_window(now)) ++sim.res.classes[static_cast<std::size_t>(cls)].window_arrived;
  {
    const std::size_t k = static_cast<std::size_t>(sim.rec.metro_group[static_cast<std::size_t>(metro)]) * control::kPriorities +
                          static_cast<std::size_t>(tc.priority);
    ++sim.rec.obs_arrivals[k];
    auto& per_minute = sim.res.demand_minutes[k];
    const auto minute = static_cast<std::size_t>(now / (60 * core::kNsPerSec));
    if (per_minute.size() <= minute) per_minute.resize(minute + 1, 0);
    ++per_minute[minute];
    auto& tokens = sim.res.demand_tokens[k];
    if (tokens.size() <= minute) tokens.resize(minute + 1, 0);
    tokens[minute] += static_cast<double>(r.req.prompt_tokens) + r.req.output_tokens + r.retrievals_left * tc.retrieval_tokens;
  }
  ++sim.rec.bucket.arrivals[static_cast<std::size_t>(cls)];
  ++sim.res.metro_requests[static_cast<std::size_t>(metro)];
  route_req(slot, now);
}

void PlanetSim::Impl::Demand::route_req(std::uint32_t slot, Ns now) {
  Req& r = reqs[slot];
  const int model = sim.class_model[static_cast<std::size_t>(r.cls)];
  views.clear();
  view_deploy.clear();
  // A sim.controller's routing table may take a deployment out of the candidates (weight 0); it
  // stays a candidate when nothing else is left.
  bool weighted = false;
  for (int d : sim.fleet.model_deploys[static_cast<std::size_t>(model)]) {
    const Deploy& dep = sim.fleet.deploys[static_cast<std::size_t>(d)];
    weighted |= dep.route_weight <= 0 && sim.fleet.site_up[static_cast<std::size_t>(dep.site)] && dep.up > 0;
  }
  for (int pass = weighted ? 0 : 1; pass < 2 && views.empty(); ++pass)
  for (int d : sim.fleet.model_deploys[static_cast<std::size_t>(model)]) {
    const Deploy& dep = sim.fleet.deploys[static_cast<std::size_t>(d)];
    if (!sim.fleet.site_up[static_cast<std::size_t>(dep.site)] || dep.up == 0) continue;
    if (pass == 0 && dep.route_weight <= 0) continue;
    // Built in place: a local copied in would be written field by field and read back whole,
    // which stalls on every store it reads (this loop runs once per deployment per request).
    control::SiteView& v = views.emplace_back();
    v.site = dep.site;
    v.rtt_ms = sim.net.user_rtt(r.metro, dep.site);
    v.outstanding = static_cast<int>(dep.outstanding);
    v.replicas = dep.up;
    v.service_rps = dep.service_rps;
    v.batch_slots = dep.batch_slots;
    v.prefill_tok_s = dep.prefill_tok_s;
    v.carbon_g_per_kwh = sim.w.sites[static_cast<std::size_t>(dep.site)].carbon_g_per_kwh;
    if (router_needs_detail) {
      double kv = 0;
      int waiting = 0;
      for (int i = dep.first; i < dep.first + dep.count; ++i)
        if (sim.fleet.replica_up[static_cast<std::size_t>(i)]) {
          kv += sim.fleet.replicas[static_cast<std::size_t>(i)].kv_usage();
          waiting += sim.fleet.replicas[static_cast<std::size_t>(i)].waiting();
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
    view_deploy.push_back(d);
  }
  if (views.empty()) {
    lose(slot, "no site up serves " + sim.models[static_cast<std::size_t>(model)]);
    return;
  }
  const control::GeoRequest gr{r.gid, r.req.prompt_tokens, static_cast<int>(r.req.priority), r.session};
  const auto pick = router->pick(gr, views);
  if (!pick) {  // as the gateway answers 503 router_rejected
    reject(slot, "router rejected");
    return;
  }
  const auto& v = views[*pick];
  {
    // Shedding (a sim.controller's levels per class; critical never): the chosen deployment's
    // requests per sequence slot of its ready sim.replicas.
    const auto p = static_cast<std::size_t>(r.req.priority);
    const Deploy& cand = sim.fleet.deploys[static_cast<std::size_t>(view_deploy[*pick])];
    if (p > 0 && sim.fleet.shed_level[p] > 0 &&
        static_cast<double>(cand.outstanding) >= sim.fleet.shed_level[p] * cand.up * sim.cfg.engine.max_num_seqs) {
      reject(slot, "shed");
      return;
    }
  }
  r.site = v.site;
  r.deploy = view_deploy[*pick];
  auto& dep = sim.fleet.deploys[static_cast<std::size_t>(r.deploy)];
  ++dep.outstanding;
  ++dep.routed_window;
  // What the engine will prefill: the prompt and the context its retrievals will add.
  dep.prompt_window += static_cast<double>(r.req.prompt_tokens) +
                       r.retrievals_left * sim.w.workload.classes[static_cast<std::size_t>(r.cls)].retrieval_tokens;
  dep.output_window += static_cast<double>(r.req.output_tokens);
  auto& ss = sim.res.sites[static_cast<std::size_t>(r.site)];
  ++ss.routed;
  ss.peak_outstanding = std::max(ss.peak_outstanding, dep.outstanding);
  r.kv_from = -1;
  r.kv_moved = false;
  if (r.ring_slot >= 0) {
    auto& sr = metro_sessions[static_cast<std::size_t>(r.metro)][static_cast<std::size_t>(r.ring_slot)];
    if (sr.session == r.session) {
      // Its last turn ran elsewhere: that site's cache holds the shared prefix's KV.
      if (sr.site >= 0 && sr.site != r.site && r.shared_tokens > 0) r.kv_from = sr.site;
      sr.site = r.site;
    }
  }
  r.one_way_ms = v.rtt_ms / 2;
  const Ns one_way = core::from_seconds(r.one_way_ms / 1000);
  const int access = sim.net.metro_link0 + r.metro;
  sim.rec.count_kind("upload", r.upload_bytes, false);
  // Served away from where the metro enters the backbone: the upload crosses the DCI too.
  std::vector<int> path{access};
  const int entry = sim.net.metro_entry[static_cast<std::size_t>(r.metro)];
  if (entry != r.site && sim.net.route(entry, r.site).ok) {
    const auto& dci = sim.net.route(entry, r.site).links;
    path.insert(path.end(), dci.begin(), dci.end());
    sim.rec.count_kind("remote_upload", r.upload_bytes, true);
  }
  r.step_start = now;
  if (r.upload_bytes >= sim.cfg.flow_threshold_bytes) {
    r.stage = Stage::kUpload;
    sim.net.start_flow(std::move(path), user_class(r.req.priority), r.upload_bytes, FlowKind::kUpload, static_cast<int>(slot),
               -1, r.site, now);
  } else {
    r.stage = Stage::kAtSite;
    double xfer = 0;
    for (int dl : path) xfer = std::max(xfer, r.upload_bytes / sim.net.fn.capacity(dl));
    if (path.size() > 1) sim.net.count_link_bytes(std::vector<int>(path.begin() + 1, path.end()), r.upload_bytes);
    r.net_ns += one_way + core::from_seconds(xfer);
    step_at(slot, now + one_way + core::from_seconds(xfer));
  }
}

// The request is at its site (or back from a retrieval): retrieve, or run.
void PlanetSim::Impl::Demand::at_site(std::uint32_t slot, Ns now) {
  Req& r = reqs[slot];
  const auto& dep = sim.fleet.deploys[static_cast<std::size_t>(r.deploy)];
  if (!sim.fleet.site_up[static_cast<std::size_t>(r.site)] || dep.up == 0) {
    retry(slot, now, "site outage");
    return;
  }
  if (r.kv_from >= 0 && !r.kv_moved && fetch_kv(slot, now)) return;
  if (r.retrievals_left > 0) {
    start_retrieval(slot, now);
    return;
  }
  // Within the site: llm-d scores the sim.replicas (pods) as it scores sites, prefix included;
  // every other policy leaves it to the site's balancer: the fewest outstanding requests.
  int best = -1;
  SessionRec* sr = nullptr;
  if (r.ring_slot >= 0) {
    auto& last = metro_sessions[static_cast<std::size_t>(r.metro)][static_cast<std::size_t>(r.ring_slot)];
    if (last.session == r.session) sr = &last;
  }
  if (router_picks_pods) {
    pod_views.clear();
    for (int i = dep.first; i < dep.first + dep.count; ++i) {
      if (!sim.fleet.replica_up[static_cast<std::size_t>(i)]) continue;
      const auto& rep = sim.fleet.replicas[static_cast<std::size_t>(i)];
      control::SiteView& v = pod_views.emplace_back();
      v.site = i;
      v.outstanding = rep.outstanding();
      v.waiting = rep.waiting();
      v.replicas = 1;
      v.kv_usage = rep.kv_usage();
      v.prefix_hit = sr && sr->replica == i && r.shared_tokens > 0
                         ? static_cast<double>(r.shared_tokens) / r.req.prompt_tokens
                         : 0.0;
    }
    const control::GeoRequest gr{r.gid, r.req.prompt_tokens, static_cast<int>(r.req.priority), r.session};
    best = pod_views[router->pick(gr, pod_views).value_or(0)].site;
  } else {
    best = sim.fleet.least_loaded_replica(dep);
  }
  if (sr) sr->replica = best;
  // Blocks of its prefix that the replica moved to host memory, or on down to its SSD, load back
  // (at the fleet's kv_host_gb_s and kv_ssd_gb_s per accelerator, one copy at a time per replica),
  // when that is faster than computing them; the request waits for its copy, the batch does not
  // (vLLM's OffloadingConnector and LMCache load asynchronously).
  auto& rep = sim.fleet.replicas[static_cast<std::size_t>(best)];
  if (rep.has_offload_tier() && !r.req.block_hashes.empty() && r.load_replica < 0 && dep.prefill_tok_s > 0) {
    const auto c = rep.cached_blocks(r.req.block_hashes);
    const double per_block = static_cast<double>(r.req.hash_block_tokens) * dep.llm->kv_bytes_per_token();
    const double host_bytes = static_cast<double>(c.host) * per_block, ssd_bytes = static_cast<double>(c.ssd) * per_block;
    const double tokens = static_cast<double>(c.host + c.ssd) * r.req.hash_block_tokens;
    const double load_s = host_bytes / (sim.w.fleet.kv_host_gb_s * 1e9 * dep.tp) + ssd_bytes / (sim.w.fleet.kv_ssd_gb_s * 1e9 * dep.tp);
    auto& free = sim.fleet.host_load_free[static_cast<std::size_t>(best)];
    const Ns done = std::max(free, now) + core::from_seconds(load_s);
    if (c.host + c.ssd > 0 && core::to_seconds(done - now) < tokens / dep.prefill_tok_s) {
      free = done;
      ++sim.res.kv_host_loads;
      sim.res.kv_host_bytes += host_bytes + ssd_bytes;
      if (c.ssd > 0) {
        ++sim.res.kv_ssd_loads;
        sim.res.kv_ssd_bytes += ssd_bytes;
      }
      r.load_replica = best;
      r.load_blocks = static_cast<std::int32_t>(c.gpu + c.host + c.ssd);
      r.stage = Stage::kHostLoad;
      r.step_start = now;
      step_at(slot, done);
      return;
    }
  }
  enqueue_on(slot, best, now);
}

void PlanetSim::Impl::Demand::enqueue_on(std::uint32_t slot, int best, Ns now) {
  Req& r = reqs[slot];
  const auto& dep = sim.fleet.deploys[static_cast<std::size_t>(r.deploy)];
  // The first `blocks` of the prompt's blocks are in the replica's cache before it looks.
  const auto warm = [&](std::size_t blocks) {
    sim.fleet.replicas[static_cast<std::size_t>(best)].warm_prefix(
        std::span<const std::uint64_t>(r.req.block_hashes.data(), std::min(r.req.block_hashes.size(), blocks)),
        r.req.hash_block_tokens);
  };
  if (r.load_blocks > 0) {  // loaded from the host tier
    warm(static_cast<std::size_t>(r.load_blocks));
    r.load_blocks = 0;
  }
  if (r.kv_moved) warm(static_cast<std::size_t>(r.shared_tokens / kHashBlock));  // fetched from the peer site
  r.stage = Stage::kEngine;
  r.t_enqueue = now;
  // The engine takes the request's block hashes; its scalars stay here for the records, and an
  // evacuation hands the hashes back.
  workload::Request handed = std::move(r.req);
  r.req.block_hashes = {};
  handed.arrival = now;
  r.pd = 0;
  if (dep.decode_deploy >= 0 && handed.output_tokens > 1) {  // prefill here; decode at the decode site
    r.pd = 1;
    r.pd_hashes = handed.block_hashes;
    handed.output_tokens = 1;
  }
  sim.fleet.replicas[static_cast<std::size_t>(best)].enqueue(std::move(handed), now);
  sim.fleet.reindex(static_cast<std::size_t>(best));
  sim.fleet.sync(static_cast<std::size_t>(best));
}

void PlanetSim::Impl::Demand::start_retrieval(std::uint32_t slot, Ns now) {
  Req& r = reqs[slot];
  const auto& tc = sim.w.workload.classes[static_cast<std::size_t>(r.cls)];
  --r.retrievals_left;
  ++sim.res.retrievals;
  r.stage = Stage::kRetrieval;
  r.step_start = now;
  r.req.prompt_tokens += static_cast<std::int32_t>(tc.retrieval_tokens);
  const auto& holders = sim.net.shard_holders[rng_route.below(sim.net.shard_holders.size())];
  int holder = -1;
  double best = 1e300;
  for (int h : holders) {
    if (!sim.fleet.site_up[static_cast<std::size_t>(h)]) continue;
    const Route& rt = sim.net.route(h, r.site);
    if (rt.ok && rt.one_way_ms < best) best = rt.one_way_ms, holder = h;
  }
  const Ns compute = core::from_seconds(tc.retrieval_compute_ms / 1000);
  if (holder < 0) {  // every holder is down or cut off: the step fails, the request goes on
    ++sim.res.retrieval_failures;
    step_at(slot, now + compute);
    return;
  }
  const Route& rt = sim.net.route(holder, r.site);
  const double bytes = tc.retrieval_mb * 1e6;
  const Ns rtt = core::from_seconds(2 * rt.one_way_ms / 1000);
  if (holder != r.site) sim.rec.count_kind("retrieval", bytes, true);
  if (holder != r.site && bytes >= sim.cfg.flow_threshold_bytes) {
    sim.net.start_flow(rt.links, kClassRetrieval, bytes, FlowKind::kRetrieval, static_cast<int>(slot), holder, r.site, now);
    return;
  }
  sim.net.count_link_bytes(rt.links, bytes);
  double xfer = 0;
  for (int dl : rt.links) xfer = std::max(xfer, bytes / sim.net.fn.capacity(dl));
  const Ns t = now + rtt + compute + core::from_seconds(xfer);
  step_at(slot, t);
}

void PlanetSim::Impl::Demand::step(std::uint32_t slot, Ns now) {
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
    case Stage::kKvFetch:
      r.net_ns += now - r.step_start;
      r.stage = Stage::kAtSite;
      at_site(slot, now);
      break;
    case Stage::kPdHandoff:
      pd_handoff(slot, now);
      break;
    case Stage::kPdTransfer:
      r.net_ns += now - r.step_start;
      pd_decode(slot, r.deploy, now);
      break;
    case Stage::kHostLoad:
      // The replica may have gone down or drained while it copied: choose again (no second load).
      if (sim.fleet.replica_up[static_cast<std::size_t>(r.load_replica)] &&
          sim.fleet.replica_deploy[static_cast<std::size_t>(r.load_replica)] == r.deploy && sim.fleet.site_up[static_cast<std::size_t>(r.site)]) {
        enqueue_on(slot, r.load_replica, now);
      } else {
        r.load_blocks = 0;
        r.stage = Stage::kAtSite;
        at_site(slot, now);
      }
      break;
    default:
      break;
  }
}

void PlanetSim::Impl::Demand::complete(const engine::Completion& c) {
  const auto slot = static_cast<std::uint32_t>(c.id);
  Req& r = reqs[slot];
  auto& cs = sim.res.classes[static_cast<std::size_t>(r.cls)];
  --sim.fleet.deploys[static_cast<std::size_t>(r.deploy)].outstanding;
  if (c.rejected) {
    reject(slot, "does not fit in the KV cache");
    return;
  }
  const auto& tc = sim.w.workload.classes[static_cast<std::size_t>(r.cls)];
  const Ns back = core::from_seconds(r.one_way_ms / 1000);
  if (r.pd == 1) {  // prefilled: the first token is on its way to the user; the KV moves on
    r.pd_first_user = c.first_token + back;
    r.pd_first_sched = c.first_scheduled;
    r.pd_cached = c.cached_tokens;
    r.stage = Stage::kPdHandoff;
    step_at(slot, c.finish);  // not from within the replica's completions
    return;
  }
  // As the user sees it: the first token, then the last (from the decode site when disaggregated).
  Ns first_user = c.first_token + back, first_sched = c.first_scheduled, finish_user = c.finish + back;
  int out_tokens = c.output_tokens;
  std::int32_t cached = c.cached_tokens;
  int stream_site = r.site;  // where the output streams from
  if (r.pd == 2) {
    stream_site = sim.fleet.deploys[static_cast<std::size_t>(r.deploy)].site;
    first_user = r.pd_first_user;
    first_sched = r.pd_first_sched;
    finish_user = c.finish + core::from_seconds(sim.net.user_rtt(r.metro, stream_site) / 2000);
    out_tokens = c.output_tokens + 1;
    cached = r.pd_cached;
  }
  const double ttft = core::to_ms(first_user - r.t_arrive);
  const double e2e = core::to_ms(finish_user - r.t_arrive);
  const double tpot = out_tokens > 1 ? core::to_ms(finish_user - first_user) / (out_tokens - 1) : 0;
  ++sim.res.completed;
  ++cs.completed;
  cs.output_tokens += static_cast<std::uint64_t>(out_tokens);
  cs.prompt_tokens += static_cast<std::uint64_t>(c.prompt_tokens);
  cs.cached_tokens += static_cast<std::uint64_t>(cached);
  cs.ttft.add(ttft);
  cs.e2e.add(e2e);
  if (out_tokens > 1) cs.tpot.add(tpot);
  cs.network.add(core::to_ms(r.net_ns + back));
  if (r.retrieval_ns > 0) cs.retrieval.add(core::to_ms(r.retrieval_ns));
  cs.queue.add(core::to_ms(first_sched - r.t_enqueue));
  cs.compute.add(core::to_ms(c.finish - first_sched));
  const bool met = (tc.slo_ttft_ms <= 0 || ttft <= tc.slo_ttft_ms) && (tc.slo_tpot_ms <= 0 || tpot <= tc.slo_tpot_ms);
  if (met) {
    ++cs.met_slo;
    if (sim.in_window(r.t_arrive)) ++cs.window_met_slo;
    ++sim.res.metro_met_slo[static_cast<std::size_t>(r.metro)];
  }
  sim.res.metro_ttft_sum[static_cast<std::size_t>(r.metro)] += ttft;
  {
    const std::size_t k = static_cast<std::size_t>(sim.rec.metro_group[static_cast<std::size_t>(r.metro)]) * control::kPriorities +
                          static_cast<std::size_t>(r.req.priority);
    sim.rec.obs_ttft_sum[k] += ttft;
    ++sim.rec.obs_ttft_n[k];
  }
  ++sim.res.sites[static_cast<std::size_t>(r.site)].completed;
  ++sim.rec.bucket.completed;
  sim.rec.bucket.ttft.add(ttft);
  const double response = out_tokens * sim.cfg.response_bytes_per_token;
  sim.rec.count_kind("response", response, false);
  const int entry = sim.net.metro_entry[static_cast<std::size_t>(r.metro)];
  if (entry != stream_site && sim.net.route(stream_site, entry).ok) {  // streamed back across the DCI to the entry site
    sim.net.count_link_bytes(sim.net.route(stream_site, entry).links, response);
    sim.rec.count_kind("remote_response", response, true);
  }
  sim.rec.row(r, "completed", met ? "" : "missed SLO", ttft, tpot, e2e, core::to_ms(first_sched - r.t_enqueue),
      core::to_ms(c.finish - first_sched), out_tokens);
  free_req(slot);
}

// ---- demand -----------------------------------------------------------------------------------
void PlanetSim::Impl::Demand::recompute_demand(Ns t) {
  const double pop = population;
  const double base = sim.w.workload.requests_per_day * sim.cfg.scale / 86400;
  const double hours = core::to_seconds(t) / 3600;
  double cum = 0;
  for (std::size_t i = 0; i < sim.w.metros.size(); ++i) {
    double h = std::fmod(hours + sim.w.metros[i].utc_offset_h, 24.0);
    if (h < 0) h += 24;
    const auto h0 = static_cast<std::size_t>(h) % 24;
    const double f = h - std::floor(h);
    const double d = sim.w.workload.diurnal[h0] * (1 - f) + sim.w.workload.diurnal[(h0 + 1) % 24] * f;
    cum += base * sim.w.metros[i].demand_weight / pop * d * metro_surge[i];
    metro_cum[i] = cum;
  }
  const auto& rhythm = sim.w.workload.rhythm;
  const double f = rhythm.empty() ? 1.0 : rhythm[static_cast<std::size_t>(t / kWindowNs) % rhythm.size()];
  if (f != 1.0)
    for (auto& c : metro_cum) c *= f;
  total_rate = cum * f;
}

void PlanetSim::Impl::Demand::next_arrival(Ns now) {
  if (now >= sim.horizon) return;
  if (total_rate <= 0) {
    sim.q.push_kind(window_end, Ev::kWindow);
    return;
  }
  const Ns t = now + std::max<Ns>(1, core::from_seconds(-std::log(rng_arrival.uniform()) / total_rate));
  if (t >= window_end) sim.q.push_kind(window_end, Ev::kWindow);
  else sim.q.push_kind(t, Ev::kArrival);
}

}  // namespace infergrid::twin
