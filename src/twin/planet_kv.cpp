// The planet twin's KV moves between sites: a continuing turn's prefix fetched from the site of its
// last turn, and a disaggregated deployment's prompt pulled by its decode site (docs/planet.md
// "What is modeled").
#include "twin/planet_impl.hpp"

namespace infergrid::twin {

// Fetch or recompute: the prefix's KV (KV bytes per token x shared tokens, from the catalog) over
// the route from the site holding it takes RTT + bytes / the route's bottleneck (what is left of
// it now); recomputing takes the shared tokens at the deployment's prefill speed. A fetch moves
// as a flow of the request's own class and the request waits for it; a recompute goes on at once.
bool PlanetSim::Impl::Demand::fetch_kv(std::uint32_t slot, Ns now) {
  Req& r = reqs[slot];
  const int from = r.kv_from;
  r.kv_from = -1;
  const auto& dep = sim.fleet.deploys[static_cast<std::size_t>(r.deploy)];
  const Route& rt = sim.net.route(from, r.site);
  if (!sim.cfg.engine.enable_prefix_caching || !sim.fleet.site_up[static_cast<std::size_t>(from)] || !rt.ok ||
      dep.prefill_tok_s <= 0) {
    ++sim.res.kv_recomputed;
    return false;
  }
  const double bytes = dep.llm->kv_bytes_per_token() * r.shared_tokens;
  double free_rate = 1e300;
  for (int dl : rt.links) {
    const double cap = sim.net.fn.capacity(dl);
    free_rate = std::min(free_rate, std::max(cap - sim.net.fn.load(dl), 0.05 * cap));
  }
  const double rtt_s = 2 * rt.one_way_ms / 1000;
  if (!(rtt_s + bytes / free_rate < r.shared_tokens / dep.prefill_tok_s)) {
    ++sim.res.kv_recomputed;
    return false;
  }
  ++sim.res.kv_moves;
  r.kv_moved = true;
  r.stage = Stage::kKvFetch;
  r.step_start = now;
  sim.rec.count_kind("kv", bytes, true);
  pull_kv(slot, from, r.site, bytes, now);
  return true;
}

void PlanetSim::Impl::Demand::pull_kv(std::uint32_t slot, int from, int to, double bytes, Ns now) {
  const Route& rt = sim.net.route(from, to);
  if (bytes >= sim.cfg.flow_threshold_bytes) {
    sim.net.start_flow(rt.links, user_class(reqs[slot].req.priority), bytes, FlowKind::kKv, static_cast<int>(slot), from, to, now);
    return;
  }
  sim.net.count_link_bytes(rt.links, bytes);
  double xfer = 0;
  for (int dl : rt.links) xfer = std::max(xfer, bytes / sim.net.fn.capacity(dl));
  step_at(slot, now + core::from_seconds(2 * rt.one_way_ms / 1000 + xfer));
}

// The KV of the prompt (KV bytes per token x prompt tokens, retrieved context included) moves as
// the decode site pulls it: RTT + bytes over the route's bottleneck, a flow of the request's class.
// A decode site that is down, cut off or without a ready replica: it decodes where it was prefilled
// (its KV is there).
void PlanetSim::Impl::Demand::pd_handoff(std::uint32_t slot, Ns now) {
  Req& r = reqs[slot];
  const int from = r.deploy;
  const Deploy& src = sim.fleet.deploys[static_cast<std::size_t>(from)];
  r.pd = 2;
  r.pd_prefill_deploy = from;
  const int to = src.decode_deploy;
  const Deploy* dst = to >= 0 ? &sim.fleet.deploys[static_cast<std::size_t>(to)] : nullptr;
  if (!dst || !sim.fleet.site_up[static_cast<std::size_t>(dst->site)] || dst->up == 0 || !sim.net.route(src.site, dst->site).ok) {
    ++sim.res.pd_local;
    ++sim.fleet.deploys[static_cast<std::size_t>(from)].outstanding;
    pd_decode(slot, from, now);
    return;
  }
  ++sim.res.pd_handoffs;
  r.deploy = to;
  ++sim.fleet.deploys[static_cast<std::size_t>(to)].outstanding;
  const double bytes = src.llm->kv_bytes_per_token() * r.req.prompt_tokens;
  sim.rec.count_kind("pd_kv", bytes, true);
  r.stage = Stage::kPdTransfer;
  r.step_start = now;
  pull_kv(slot, src.site, dst->site, bytes, now);
}

// Joins the least-loaded ready replica of `deploy` with its prompt's KV in place: the engine
// computes the last prompt token and decodes the rest of the output (the prefill sampled the first).
void PlanetSim::Impl::Demand::pd_decode(std::uint32_t slot, int deploy, Ns now) {
  Req& r = reqs[slot];
  Deploy& dep = sim.fleet.deploys[static_cast<std::size_t>(deploy)];
  if (!sim.fleet.site_up[static_cast<std::size_t>(dep.site)] || dep.up == 0) {
    const int back = r.pd_prefill_deploy;
    const Deploy& pre = sim.fleet.deploys[static_cast<std::size_t>(back)];
    if (deploy != back && sim.fleet.site_up[static_cast<std::size_t>(pre.site)] && pre.up > 0) {
      --dep.outstanding;  // the KV is still at the prefill site: decode there
      r.deploy = back;
      ++sim.fleet.deploys[static_cast<std::size_t>(back)].outstanding;
      ++sim.res.pd_local;
      pd_decode(slot, back, now);
      return;
    }
    r.pd = 0;
    retry(slot, now, "site outage");
    return;
  }
  const int best = sim.fleet.least_loaded_replica(dep);
  workload::Request handed;
  handed.id = slot;
  handed.arrival = now;
  handed.priority = r.req.priority;
  handed.prompt_tokens = r.req.prompt_tokens;
  handed.output_tokens = r.req.output_tokens - 1;
  handed.kv_ready_tokens = r.req.prompt_tokens;
  handed.block_hashes = std::move(r.pd_hashes);
  handed.hash_block_tokens = r.req.hash_block_tokens;
  r.pd_hashes = {};
  r.stage = Stage::kEngine;
  if (deploy != r.pd_prefill_deploy) ++sim.res.sites[static_cast<std::size_t>(dep.site)].pd_decoded;
  sim.fleet.replicas[static_cast<std::size_t>(best)].enqueue(std::move(handed), now);
  sim.fleet.reindex(static_cast<std::size_t>(best));
  sim.fleet.sync(static_cast<std::size_t>(best));
}

}  // namespace infergrid::twin
