#include "engine/replica.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace infergrid::engine {

using core::Ns;

void EngineConfig::validate() const {
  if (max_num_seqs < 1) core::fail_flag("max-num-seqs", "must be at least 1");
  if (max_num_batched_tokens < max_num_seqs)
    core::fail_flag("max-num-batched-tokens", "must be at least --max-num-seqs (as in vLLM)");
  if (block_size < 1 || block_size > 4096) core::fail_flag("block-size", "must be in [1, 4096]");
  if (!(gpu_memory_utilization > 0 && gpu_memory_utilization <= 1))
    core::fail_flag("gpu-memory-utilization", "must be in (0, 1]");
}

namespace {
// A prefill chunk of `tokens` after `computed` tokens of context, added to a batch's shape.
void add_chunk(model::BatchShape& shape, std::int64_t computed, std::int64_t tokens) {
  const double t = static_cast<double>(tokens);
  shape.prefill_tokens += t;
  shape.prefill_pairs += t * (static_cast<double>(computed) + (t + 1) / 2);
  ++shape.prefill_seqs;
}
// A decoding sequence holding `context` tokens, added to a batch's shape.
void add_decode(model::BatchShape& shape, std::int64_t context) {
  ++shape.decode_seqs;
  shape.decode_context += static_cast<double>(context);
}
// Below this, a chunk beside other work costs more in fixed overhead than it computes.
constexpr std::int64_t kMinChunk = 64;
}  // namespace

bool Replica::exempt(const Seq& s) const {
  return cfg_.priority_scheduling && s.req.priority == workload::Priority::kCritical;
}

std::int64_t Replica::fit_chunk(const model::BatchShape& base, const Seq& s, std::int64_t want) const {
  if (cfg_.step_target_s <= 0 || want <= 0 || exempt(s)) return want;
  const auto seconds = [&](std::int64_t c) {
    model::BatchShape shape = base;
    add_chunk(shape, s.computed, c);
    return step_->iteration(shape).seconds;
  };
  const bool alone = base.decode_seqs == 0 && base.prefill_seqs == 0;
  const std::int64_t floor = std::min(want, kMinChunk);
  if (seconds(want) <= cfg_.step_target_s) return want;
  if (seconds(floor) > cfg_.step_target_s) return alone ? floor : 0;
  std::int64_t lo = floor, hi = want;  // seconds(lo) fits, seconds(hi) does not
  while (hi - lo > 1) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    if (seconds(mid) <= cfg_.step_target_s) lo = mid;
    else hi = mid;
  }
  return lo;
}

model::BatchShape Replica::running_as_decodes() const {
  model::BatchShape shape;
  for (const int seq : running_) {
    const Seq& s = pool_[static_cast<std::size_t>(seq)];
    add_decode(shape, std::max(s.computed, s.target) + 1);
  }
  return shape;
}

bool Replica::may_join(const model::BatchShape& decodes, const Seq& s) const {
  if (cfg_.step_target_s <= 0 || decodes.decode_seqs == 0 || exempt(s)) return true;
  model::BatchShape shape = decodes;
  add_decode(shape, s.target + 1);
  return step_->iteration(shape).seconds <= (1 - cfg_.step_prefill_reserve) * cfg_.step_target_s;
}

void Replica::set_schedule(double step_target_s, double prefill_reserve, bool priority, Ns now) {
  if (step_target_s == cfg_.step_target_s && prefill_reserve == cfg_.step_prefill_reserve &&
      priority == cfg_.priority_scheduling)
    return;
  cfg_.step_target_s = std::max(0.0, step_target_s);
  cfg_.step_prefill_reserve = std::clamp(prefill_reserve, 0.0, 0.95);
  if (priority && !cfg_.priority_scheduling) {
    cfg_.priority_scheduling = true;
    std::stable_sort(waiting_.begin(), waiting_.end(), [&](int a, int b) { return order(a) < order(b); });
  }
  cfg_.priority_scheduling = priority;
  if (busy_until_ != core::kNever) cut_segment(now);
}

Replica::Replica(int id, std::shared_ptr<const model::StepModel> step, const EngineConfig& cfg,
                 std::int64_t kv_capacity_tokens)
    : id_(id), step_(std::move(step)), cfg_(cfg) {
  total_blocks_ = kv_capacity_tokens / cfg_.block_size;
  if (cfg_.enable_prefix_caching) {
    cache_.emplace(cfg_.prefix_cache_tokens != 0 ? cfg_.prefix_cache_tokens
                                                 : total_blocks_ * cfg_.block_size);
    if (cfg_.host_kv_tokens > 0) host_cache_.emplace(cfg_.host_kv_tokens);
    if (cfg_.ssd_kv_tokens > 0) ssd_cache_.emplace(cfg_.ssd_kv_tokens);
  }
}

// Into the GPU's cache; what it evicts goes down a tier (host memory, then SSD), and what the
// host tier evicts goes to the SSD.
void Replica::cache_insert(std::span<const std::uint64_t> hashes, std::int64_t block_tokens) {
  if (!host_cache_ && !ssd_cache_) {
    cache_->insert(hashes, block_tokens);
    return;
  }
  evicted_.clear();
  cache_->insert(hashes, block_tokens, &evicted_);
  const std::vector<std::uint64_t>* to_ssd = &evicted_;  // what reaches the SSD tier
  if (host_cache_ && !evicted_.empty()) {
    evicted_host_.clear();
    host_cache_->insert(evicted_, block_tokens, ssd_cache_ ? &evicted_host_ : nullptr);
    to_ssd = &evicted_host_;
  }
  if (ssd_cache_ && !to_ssd->empty()) ssd_cache_->insert(*to_ssd, block_tokens);
}

int Replica::alloc_seq(workload::Request&& r) {
  int idx;
  if (!free_.empty()) {
    idx = free_.back();
    free_.pop_back();
  } else {
    idx = static_cast<int>(pool_.size());
    pool_.emplace_back();
  }
  Seq& s = pool_[static_cast<std::size_t>(idx)];
  s = Seq{};
  s.req = std::move(r);
  s.target = s.req.prompt_tokens;
  // KV that came with the request (prefilled elsewhere) is computed; its blocks are taken at
  // admission like any computed token's, and a preemption loses it. The last token is recomputed,
  // to sample from.
  if (s.req.kv_ready_tokens > 0) s.computed = std::min<std::int64_t>(s.req.kv_ready_tokens, s.target - 1);
  return idx;
}

void Replica::push_waiting(int seq, bool front) {
  if (!cfg_.priority_scheduling) {
    if (front) waiting_.push_front(seq);
    else waiting_.push_back(seq);
    return;
  }
  // Ordered by (priority, arrival id): preempted sequences regain their place.
  const auto k = order(seq);
  auto it = std::upper_bound(waiting_.begin(), waiting_.end(), k,
                             [&](const auto& kk, int i) { return kk < order(i); });
  waiting_.insert(it, seq);
}

void Replica::enqueue(workload::Request&& r, Ns now) {
  const int seq = alloc_seq(std::move(r));
  push_waiting(seq, false);
  if (busy_until_ == core::kNever) {
    plan(now);
    return;
  }
  cut_segment(now);
}

// A decode segment is running: cut it at the first iteration boundary at or after now, where the
// scheduler will next see what changed.
void Replica::cut_segment(Ns now) {
  if (seg_steps_ > 1) {
    std::int64_t lo = 1, hi = seg_steps_;
    while (lo < hi) {
      const std::int64_t mid = (lo + hi) / 2;
      if (work_start_ + core::from_seconds(segment_seconds(mid)) >= now) hi = mid;
      else lo = mid + 1;
    }
    seg_steps_ = lo;
    busy_until_ = work_start_ + core::from_seconds(segment_seconds(lo));
  }
}

double Replica::segment_seconds(std::int64_t k) const {
  // sum_{j<k} fixed + per_token * (context0 + n j)
  const double n = static_cast<double>(batch_.size());
  const double kk = static_cast<double>(k);
  return kk * seg_fixed_s_ + seg_per_token_s_ * (kk * seg_context0_ + n * kk * (kk - 1) / 2);
}

int Replica::pick_victim(std::size_t from) const {
  if (!cfg_.priority_scheduling) return running_.back();
  // Sequences before `from` are already in this iteration's batch and keep their blocks.
  int best = running_.back();
  for (std::size_t k = from; k < running_.size(); ++k) {
    const int i = running_[k];
    if (order(i) > order(best)) best = i;
  }
  return best;
}

void Replica::preempt(int seq) {
  Seq& s = pool_[static_cast<std::size_t>(seq)];
  used_blocks_ -= s.blocks;
  s.blocks = 0;
  s.computed = 0;
  s.target = s.req.prompt_tokens + s.generated;  // recompute prompt and output so far
  ++s.preemptions;
  ++stats_.preemptions;
  running_.erase(std::find(running_.begin(), running_.end(), seq));
  push_waiting(seq, true);
  preempted_in_plan_ = true;
}

bool Replica::head_admissible(std::int64_t budget, std::int64_t free_blocks) const {
  if (waiting_.empty() || budget <= 0 || static_cast<int>(running_.size()) >= cfg_.max_num_seqs)
    return false;
  const Seq& s = pool_[static_cast<std::size_t>(waiting_.front())];
  const std::int64_t want = std::min(s.target - s.computed, budget);
  return blocks_for(s.computed + want) <= free_blocks;
}

// Builds this iteration's batch; false when nothing can run.
bool Replica::build_batch() {
  batch_.clear();
  preempted_in_plan_ = false;
  std::int64_t budget = cfg_.max_num_batched_tokens;
  // Under a step target, prefill is fitted beside every running decode.
  const bool fitted = cfg_.step_target_s > 0;
  model::BatchShape shape;
  if (fitted)
    for (const int seq : running_) {
      const Seq& s = pool_[static_cast<std::size_t>(seq)];
      if (s.computed >= s.target) add_decode(shape, s.computed + 1);
    }
  for (std::size_t i = 0; i < running_.size();) {
    const int seq = running_[i];
    Seq& s = pool_[static_cast<std::size_t>(seq)];
    const bool decoding = s.computed >= s.target;
    std::int64_t want = decoding ? 1 : std::min(s.target - s.computed, budget);
    if (fitted && !decoding) want = fit_chunk(shape, s, want);
    if (want <= 0) {
      ++i;
      continue;
    }
    const std::int64_t need = blocks_for(s.computed + want) - s.blocks;
    bool self_preempted = false;
    while (need > total_blocks_ - used_blocks_) {
      const int victim = pick_victim(i);
      preempt(victim);
      if (victim == seq) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) continue;  // running_[i] now holds the next sequence
    s.blocks += need;
    used_blocks_ += need;
    batch_.push_back({seq, want, !decoding});
    if (fitted && !decoding) add_chunk(shape, s.computed, want);
    budget -= want;
    ++i;
  }
  if (!preempted_in_plan_) {
    model::BatchShape decodes;
    if (fitted) decodes = running_as_decodes();
    while (head_admissible(budget, total_blocks_ - used_blocks_)) {
      const int seq = waiting_.front();
      Seq& s = pool_[static_cast<std::size_t>(seq)];
      // Before the cache is looked up: what fits of the prompt as it stands, and room to decode.
      const std::int64_t fits = fitted ? fit_chunk(shape, s, std::min(s.target - s.computed, budget)) : 0;
      if (fitted && (fits <= 0 || !may_join(decodes, s))) break;
      if (fitted) add_decode(decodes, s.target + 1);
      waiting_.pop_front();
      if (cache_ && !s.req.block_hashes.empty()) {
        const std::size_t hits = cache_->match(s.req.block_hashes);
        if (!s.looked_up) {
          stats_.prefix_lookup_blocks += s.req.block_hashes.size();
          stats_.prefix_hit_blocks += hits;
        }
        // At least the last prompt token is computed, to sample from.
        const std::int64_t cached = std::min<std::int64_t>(
            static_cast<std::int64_t>(hits) * s.req.hash_block_tokens, s.target - 1);
        if (!s.looked_up) s.cached = static_cast<std::int32_t>(cached);
        s.computed = std::max<std::int64_t>(s.computed, cached);
        // Blocks enter the cache when first computed; a recompute after preemption rereads them.
        if (!s.looked_up) cache_insert(s.req.block_hashes, s.req.hash_block_tokens);
      }
      if (!s.looked_up) {
        stats_.prompt_tokens += static_cast<std::uint64_t>(s.req.prompt_tokens);
        stats_.cached_tokens += static_cast<std::uint64_t>(s.cached);
      }
      s.looked_up = true;
      std::int64_t want = std::min(s.target - s.computed, budget);
      // The cached context makes the chunk's attention dearer; what fitted before stays the floor.
      if (fitted) want = std::min(want, std::max(fit_chunk(shape, s, want), fits));
      const std::int64_t need = blocks_for(s.computed + want) - s.blocks;
      s.blocks += need;
      used_blocks_ += need;
      running_.push_back(seq);
      batch_.push_back({seq, want, true});
      if (fitted) add_chunk(shape, s.computed, want);
      budget -= want;
    }
  }
  return !batch_.empty();
}

void Replica::reject_head(Ns now) {
  const int seq = waiting_.front();
  waiting_.pop_front();
  Seq& s = pool_[static_cast<std::size_t>(seq)];
  Completion c;
  c.id = s.req.id;
  c.arrival = s.req.arrival;
  c.first_scheduled = c.first_token = c.finish = now;
  c.prompt_tokens = s.req.prompt_tokens;
  c.output_tokens = 0;
  c.priority = s.req.priority;
  c.replica = id_;
  c.rejected = true;
  done_.push_back(c);
  s.req.block_hashes = {};
  if (s.aborted) --aborted_;
  free_.push_back(seq);
}

// Number of decode steps (<= k_max) whose KV blocks fit in the free blocks.
std::int64_t Replica::kv_limited_steps(std::int64_t k_max) const {
  const std::int64_t free_blocks = total_blocks_ - used_blocks_;
  auto extra = [&](std::int64_t k) {
    std::int64_t e = 0;
    for (const Item& it : batch_) {
      const Seq& s = pool_[static_cast<std::size_t>(it.seq)];
      e += blocks_for(s.computed + k) - s.blocks;
    }
    return e;
  };
  if (extra(k_max) <= free_blocks) return k_max;
  std::int64_t lo = 1, hi = k_max;  // extra(1) == 0 <= free: blocks for step 1 are allocated
  while (lo < hi) {
    const std::int64_t mid = (lo + hi + 1) / 2;
    if (extra(mid) <= free_blocks) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

void Replica::plan(Ns now) {
  while (true) {
    if (running_.empty() && waiting_.empty()) {
      busy_until_ = core::kNever;
      idle_since_ = now;
      return;
    }
    if (build_batch()) break;
    // Nothing runs: the head of the queue cannot fit even in an empty cache.
    if (running_.empty()) reject_head(now);
  }
  if (busy_until_ == core::kNever && now > idle_since_)
    stats_.energy_j += step_->idle_power_w() * step_->accelerators() * core::to_seconds(now - idle_since_);
  for (const Item& it : batch_) {
    Seq& s = pool_[static_cast<std::size_t>(it.seq)];
    if (s.first_scheduled < 0) s.first_scheduled = now;
  }
  work_start_ = now;
  const bool all_decode =
      std::all_of(batch_.begin(), batch_.end(), [](const Item& it) { return !it.prefill; });
  const std::int64_t budget_left =
      cfg_.max_num_batched_tokens - static_cast<std::int64_t>(batch_.size());
  bool stable = all_decode && !preempted_in_plan_ && !head_admissible(budget_left, total_blocks_ - used_blocks_);
  if (all_decode && !stable && !preempted_in_plan_ && cfg_.step_target_s > 0) {
    // The head waits while no useful chunk of it fits beside this decode batch: stable too
    // (the batch's context only grows until one of its sequences finishes and ends the segment).
    model::BatchShape shape;
    for (const Item& it : batch_) add_decode(shape, pool_[static_cast<std::size_t>(it.seq)].computed + 1);
    const Seq& head = pool_[static_cast<std::size_t>(waiting_.front())];
    stable = fit_chunk(shape, head, std::min(head.target - head.computed, budget_left)) <= 0 ||
             !may_join(running_as_decodes(), head);
  }
  if (stable && cfg_.fast_forward) {
    std::int64_t k_max = INT64_MAX;
    double context = 0;
    for (const Item& it : batch_) {
      const Seq& s = pool_[static_cast<std::size_t>(it.seq)];
      k_max = std::min<std::int64_t>(k_max, s.req.output_tokens - s.generated);
      context += static_cast<double>(s.computed + 1);
    }
    const model::DecodeLine line = step_->decode_line(static_cast<int>(batch_.size()));
    seg_fixed_s_ = line.fixed_s;
    seg_per_token_s_ = line.per_token_s;
    seg_context0_ = context;
    seg_steps_ = kv_limited_steps(std::max<std::int64_t>(k_max, 1));
    const double seg_s = segment_seconds(seg_steps_);
    const double step_s = seg_s / static_cast<double>(seg_steps_);
    work_power_w_ = line.power_at(step_s);
    work_compute_share_ = line.compute_share_at(step_s);
    busy_until_ = now + core::from_seconds(seg_s);
    ++stats_.segments;
    return;
  }
  model::BatchShape shape;
  for (const Item& it : batch_) {
    const Seq& s = pool_[static_cast<std::size_t>(it.seq)];
    if (it.prefill) add_chunk(shape, s.computed, it.tokens);
    else add_decode(shape, s.computed + 1);
  }
  const model::IterationCost cost = step_->iteration(shape);
  seg_steps_ = 0;
  work_power_w_ = cost.power_w;
  work_compute_share_ = cost.compute_share;
  busy_until_ = now + std::max<Ns>(1, core::from_seconds(cost.seconds));
  ++stats_.iterations;
}

void Replica::complete(int seq, Ns t) {
  Seq& s = pool_[static_cast<std::size_t>(seq)];
  Completion c;
  c.id = s.req.id;
  c.arrival = s.req.arrival;
  c.first_scheduled = s.first_scheduled;
  c.first_token = s.first_token;
  c.finish = t;
  c.prompt_tokens = s.req.prompt_tokens;
  c.output_tokens = s.generated;
  c.cached_tokens = s.cached;
  c.preemptions = s.preemptions;
  c.priority = s.req.priority;
  c.replica = id_;
  c.energy_j = s.energy_j;
  done_.push_back(c);
  used_blocks_ -= s.blocks;
  s.req.block_hashes = {};
  if (s.aborted) --aborted_;
  free_.push_back(seq);
}

bool Replica::abort(std::uint64_t id, Ns now) {
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    Seq& s = pool_[static_cast<std::size_t>(*it)];
    if (s.req.id != id) continue;
    used_blocks_ -= s.blocks;  // a preempted sequence holds none; kept exact anyway
    s.blocks = 0;
    s.req.block_hashes = {};
    if (s.aborted) --aborted_;
    free_.push_back(*it);
    waiting_.erase(it);
    if (running_.empty() && waiting_.empty() && busy_until_ == core::kNever) idle_since_ = now;
    return true;
  }
  for (int seq : running_) {
    Seq& s = pool_[static_cast<std::size_t>(seq)];
    if (s.req.id != id) continue;
    if (!s.aborted) ++aborted_;
    s.aborted = true;
    cut_segment(now);
    return true;
  }
  return false;
}

// Running sequences whose client left give back their blocks (after the iteration they were in).
void Replica::drop_aborted() {
  if (aborted_ == 0) return;
  for (std::size_t i = 0; i < running_.size();) {
    const int seq = running_[i];
    Seq& s = pool_[static_cast<std::size_t>(seq)];
    if (!s.aborted) {
      ++i;
      continue;
    }
    used_blocks_ -= s.blocks;
    s.blocks = 0;
    s.req.block_hashes = {};
    --aborted_;
    free_.push_back(seq);
    running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
  }
}

void Replica::advance(Ns now) {
  const double dt = core::to_seconds(now - work_start_);
  const double energy = work_power_w_ * step_->accelerators() * dt;
  stats_.energy_j += energy;
  stats_.busy_s += dt;
  stats_.compute_s += work_compute_share_ * dt;
  const std::int64_t steps = seg_steps_ > 0 ? seg_steps_ : 1;
  double tokens = 0;
  for (const Item& it : batch_) tokens += static_cast<double>(it.prefill ? it.tokens : steps);
  finished_.clear();
  for (const Item& it : batch_) {
    Seq& s = pool_[static_cast<std::size_t>(it.seq)];
    s.energy_j += energy * static_cast<double>(it.prefill ? it.tokens : steps) / tokens;
    if (it.prefill) {
      s.computed += it.tokens;
      if (s.computed < s.target) continue;  // more chunks to go
      ++s.generated;                         // the prefill samples a token
    } else {
      s.computed += steps;
      s.generated += static_cast<std::int32_t>(steps);
    }
    if (s.first_token < 0) s.first_token = now;
    if (s.generated >= s.req.output_tokens) finished_.push_back(it.seq);
  }
  for (int seq : finished_) {
    running_.erase(std::find(running_.begin(), running_.end(), seq));
    complete(seq, now);
  }
  drop_aborted();
  seg_steps_ = 0;
  plan(now);
}

void Replica::power_off(Ns now) {
  if (!off_ && busy_until_ == core::kNever && now > idle_since_)
    stats_.energy_j += step_->idle_power_w() * step_->accelerators() * core::to_seconds(now - idle_since_);
  idle_since_ = now;
  off_ = true;
}

void Replica::set_step_model(std::shared_ptr<const model::StepModel> step, Ns now) {
  step_ = std::move(step);
  if (busy_until_ != core::kNever) cut_segment(now);
}

void Replica::finish(Ns end) {
  if (off_) return;
  if (busy_until_ == core::kNever && end > idle_since_) {
    stats_.energy_j += step_->idle_power_w() * step_->accelerators() * core::to_seconds(end - idle_since_);
    idle_since_ = end;
  }
}

std::vector<workload::Request> Replica::evacuate(Ns now) {
  if (busy_until_ != core::kNever) {
    const double dt = core::to_seconds(std::max<Ns>(0, now - work_start_));
    stats_.energy_j += work_power_w_ * step_->accelerators() * dt;
    stats_.busy_s += dt;
    stats_.compute_s += work_compute_share_ * dt;
  } else if (now > idle_since_) {
    stats_.energy_j += step_->idle_power_w() * step_->accelerators() * core::to_seconds(now - idle_since_);
  }
  std::vector<int> seqs(running_.begin(), running_.end());
  seqs.insert(seqs.end(), waiting_.begin(), waiting_.end());
  std::vector<workload::Request> out;
  out.reserve(seqs.size());
  for (int seq : seqs) {
    Seq& s = pool_[static_cast<std::size_t>(seq)];
    out.push_back(std::move(s.req));
    free_.push_back(seq);
  }
  aborted_ = 0;
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  running_.clear();
  waiting_.clear();
  batch_.clear();
  used_blocks_ = 0;
  seg_steps_ = 0;
  busy_until_ = core::kNever;
  idle_since_ = now;
  return out;
}

}  // namespace infergrid::engine
