#include "sim/site_sim.hpp"

#include "core/error.hpp"

namespace infergrid::sim {

using core::Ns;

namespace {
constexpr std::int32_t kArrival = -1;
}

SiteSim::SiteSim(std::shared_ptr<const model::StepModel> step, std::int64_t kv_capacity_tokens,
                 const SiteConfig& cfg)
    : cfg_(cfg), router_(control::make_router(cfg.router, cfg.seed)) {
  cfg_.engine.validate();
  if (cfg.replicas < 1) core::fail_flag("replicas", "must be at least 1");
  for (int i = 0; i < cfg.replicas; ++i) replicas_.emplace_back(i, step, cfg_.engine, kv_capacity_tokens);
  scheduled_.assign(replicas_.size(), core::kNever);
  generation_.assign(replicas_.size(), 0);
  views_.resize(replicas_.size());
}

void SiteSim::sync(std::size_t r) {
  const Ns t = replicas_[r].next_event_time();
  if (t == scheduled_[r]) return;
  scheduled_[r] = t;
  ++generation_[r];
  if (t != core::kNever) queue_.push(t, static_cast<std::int32_t>(r), generation_[r]);
}

void SiteSim::dispatch(workload::Request&& req, Ns now) {
  for (std::size_t i = 0; i < replicas_.size(); ++i) {
    const auto& rep = replicas_[i];
    views_[i] = {rep.id(), rep.running(), rep.waiting(), rep.outstanding(), rep.kv_usage(),
                 rep.config().max_num_seqs};
  }
  const control::RouteRequest rr{req.id, req.prompt_tokens, static_cast<int>(req.priority)};
  const auto pick = router_->pick(rr, control::ClusterView{views_});
  if (!pick) {
    held_.push_back(std::move(req));
    return;
  }
  replicas_[*pick].enqueue(std::move(req), now);
  sync(*pick);
}

void SiteSim::drain(std::size_t r, Metrics& metrics, std::vector<engine::Completion>* keep) {
  auto& done = replicas_[r].completions();
  for (const auto& c : done) metrics.record(c);
  if (keep) keep->insert(keep->end(), done.begin(), done.end());
  done.clear();
}

SiteResult SiteSim::run(workload::RequestSource& source, Metrics& metrics,
                        const std::function<void(double)>& progress,
                        std::vector<engine::Completion>* keep) {
  SiteResult res;
  workload::Request pending;
  bool has_pending = source.next(pending);
  if (has_pending) queue_.push(pending.arrival, kArrival);
  Ns now = 0;
  while (!queue_.empty()) {
    const Event ev = queue_.pop();
    now = ev.t;
    ++res.events;
    if (ev.target == kArrival) {
      ++res.arrived;
      if (held_.empty()) {
        dispatch(std::move(pending), now);
      } else {
        held_.push_back(std::move(pending));  // keep FCFS behind requests already held
      }
      has_pending = source.next(pending);
      if (has_pending) {
        if (pending.arrival < now) pending.arrival = now;  // generators may round backwards
        queue_.push(pending.arrival, kArrival);
      }
      if (progress && (res.arrived & 0xffff) == 0) progress(source.progress());
    } else {
      const auto r = static_cast<std::size_t>(ev.target);
      if (ev.generation != generation_[r]) continue;  // superseded
      scheduled_[r] = core::kNever;
      replicas_[r].advance(now);
      drain(r, metrics, keep);
      sync(r);
    }
    // The router may have held requests for lack of capacity; offer them again in order.
    while (!held_.empty()) {
      workload::Request req = std::move(held_.front());
      held_.pop_front();
      const std::size_t before = held_.size();
      dispatch(std::move(req), now);
      if (held_.size() > before) {  // held again: put it back at the front
        held_.push_front(std::move(held_.back()));
        held_.pop_back();
        break;
      }
    }
  }
  for (std::size_t r = 0; r < replicas_.size(); ++r) drain(r, metrics, keep);
  res.end = now;
  for (auto& rep : replicas_) {
    rep.finish(now);
    const auto& s = rep.stats();
    res.totals.iterations += s.iterations;
    res.totals.segments += s.segments;
    res.totals.preemptions += s.preemptions;
    res.totals.prefix_lookup_blocks += s.prefix_lookup_blocks;
    res.totals.prefix_hit_blocks += s.prefix_hit_blocks;
    res.totals.prompt_tokens += s.prompt_tokens;
    res.totals.cached_tokens += s.cached_tokens;
    res.totals.energy_j += s.energy_j;
    res.totals.busy_s += s.busy_s;
  }
  if (progress) progress(1.0);
  return res;
}

}  // namespace infergrid::sim
