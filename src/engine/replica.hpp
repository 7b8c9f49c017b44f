#pragma once
// One model-server replica, scheduled as vLLM (v1) schedules: continuous batching, chunked
// prefill under a token budget, a cap on running sequences, a paged KV cache, prefix caching,
// preemption by recompute, FCFS or priority order. Advanced by the event kernel through
// next_event_time() / advance(t); between changes of the batch, decode iterations are advanced
// in closed form to the next completion, KV limit or arrival.
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "core/units.hpp"
#include "engine/prefix_cache.hpp"
#include "model/perf_model.hpp"
#include "workload/request.hpp"

namespace infergrid::engine {

struct EngineConfig {
  int max_num_seqs = 256;
  int max_num_batched_tokens = 8192;
  int block_size = 16;
  double gpu_memory_utilization = 0.9;
  bool enable_prefix_caching = false;
  // Prefix-cache capacity in tokens: 0 = the KV cache's size, < 0 = unlimited (host tier).
  std::int64_t prefix_cache_tokens = 0;
  bool priority_scheduling = false;
  // The iteration time the scheduler keeps to when it adds prefill (Sarathi-Serve's token budget
  // from the TPOT SLO): a prefill chunk or a new sequence joins a batch only as far as the
  // performance model's iteration time stays within it; running decodes always run. 0: off (the
  // token budget alone, as vLLM). Under priority scheduling, critical is exempt: it joins and
  // prefills at once, at the cost of one longer step for the batch it joins.
  double step_target_s = 0;
  // Under a step target, the share of it kept for prefill: a new sequence joins only while the
  // decode step of every running sequence and it stays within (1 - this) x the target, so that a
  // prompt arriving at a full replica prefills in chunks of a useful size rather than crawls.
  double step_prefill_reserve = 0;
  bool fast_forward = true;  // closed-form decode; off only to cross-check it in tests
  // KV capacity in tokens; 0 = derived from the performance model's memory budget.
  std::int64_t kv_capacity_tokens = 0;
  // A host-memory tier for the prefix cache (vLLM's OffloadingConnector, LMCache's CPU backend):
  // blocks evicted from the GPU's cache go to an LRU of this many tokens (0: none), where a later
  // request finds them and loads them back instead of recomputing.
  std::int64_t host_kv_tokens = 0;
  // A local-SSD tier under it (LMCache's local disk backend): blocks evicted from host memory (or
  // from the GPU's cache, without a host tier) go to an LRU of this many tokens (0: none).
  std::int64_t ssd_kv_tokens = 0;
  // Throws InputError naming the flag when a knob is out of range.
  void validate() const;
};

struct Completion {
  std::uint64_t id = 0;
  core::Ns arrival = 0, first_scheduled = 0, first_token = 0, finish = 0;
  std::int32_t prompt_tokens = 0, output_tokens = 0, cached_tokens = 0, preemptions = 0;
  workload::Priority priority = workload::Priority::kInteractive;
  int replica = 0;
  double energy_j = 0;  // its share of the iterations it took part in, by tokens processed
  bool rejected = false;  // could never fit in this replica's KV cache
};

struct ReplicaStats {
  std::uint64_t iterations = 0, segments = 0, preemptions = 0;
  std::uint64_t prefix_lookup_blocks = 0, prefix_hit_blocks = 0;
  std::uint64_t prompt_tokens = 0, cached_tokens = 0;
  double energy_j = 0;
  double busy_s = 0;
  double compute_s = 0;  // busy seconds weighted by the iterations' compute share
};

class Replica {
 public:
  Replica(int id, std::shared_ptr<const model::StepModel> step, const EngineConfig& cfg,
          std::int64_t kv_capacity_tokens);

  // A request arrives at `now` (not before the last event this replica handled).
  void enqueue(workload::Request&& r, core::Ns now);
  core::Ns next_event_time() const { return busy_until_; }
  // Completes the work due at next_event_time() and plans the next iteration.
  void advance(core::Ns now);
  // Finished requests since the last call.
  std::vector<Completion>& completions() { return done_; }
  // Accounts idle power up to `end` (call once at the end of a run).
  void finish(core::Ns end);
  // The replica fails at `now`: the work in progress is lost (its energy up to now is spent),
  // and every request it held, running or waiting, is handed back in arrival order.
  std::vector<workload::Request> evacuate(core::Ns now);
  // Request `id` is abandoned at `now` (its client went away): a waiting one leaves at once; a
  // running one leaves at the end of the iteration in progress (a decode segment is cut there),
  // as vLLM aborts at its next step. No completion is reported. False if it is not held here.
  bool abort(std::uint64_t id, core::Ns now);
  // Back up at `now` after a failure: idle from here (no energy is counted while down).
  void restart(core::Ns now) { idle_since_ = now; }
  // The fleet's lifecycle: a replica holding no accelerators draws nothing. power_off accounts
  // idle energy up to `now` (the replica must hold no request); power_on starts it idle.
  void power_off(core::Ns now);
  void power_on(core::Ns now) {
    off_ = false;
    idle_since_ = now;
  }
  bool powered() const { return !off_; }
  // Draw now, all its accelerators (the iteration in progress, or idle; 0 when off).
  double power_w() const {
    if (off_) return 0;
    return (busy_until_ == core::kNever ? step_->idle_power_w() : work_power_w_) * step_->accelerators();
  }
  // A new performance model (a new power cap) from the next iteration on; a decode stretch in
  // progress is cut at the next iteration boundary. The caller re-reads next_event_time().
  void set_step_model(std::shared_ptr<const model::StepModel> step, core::Ns now);
  // How it schedules from the next iteration on: the step target (EngineConfig::step_target_s)
  // and priority order (the waiting queue is re-sorted when it turns on). The caller re-reads
  // next_event_time().
  void set_schedule(double step_target_s, double prefill_reserve, bool priority, core::Ns now);
  const model::StepModel& step_model() const { return *step_; }

  // (request id, tokens generated so far) of every running sequence, for streaming clients.
  void running_progress(std::vector<std::pair<std::uint64_t, std::int32_t>>& out) const {
    out.clear();
    for (int i : running_) out.emplace_back(pool_[static_cast<std::size_t>(i)].req.id, pool_[static_cast<std::size_t>(i)].generated);
  }
  // A prefix's KV arrives from elsewhere (a peer site's cache): its blocks enter this replica's
  // prefix cache as if computed here (no-op without prefix caching).
  void warm_prefix(std::span<const std::uint64_t> hashes, std::int64_t block_tokens) {
    if (cache_ && !hashes.empty()) cache_insert(hashes, block_tokens);
  }
  // Leading blocks of `hashes` in the GPU's cache, the run after them in the host tier, and the
  // run after that on the SSD tier.
  struct CachedBlocks {
    std::size_t gpu = 0, host = 0, ssd = 0;
  };
  CachedBlocks cached_blocks(std::span<const std::uint64_t> hashes) const {
    CachedBlocks c;
    if (!cache_) return c;
    c.gpu = cache_->match(hashes);
    if (host_cache_) c.host = host_cache_->match(hashes.subspan(c.gpu));
    if (ssd_cache_) c.ssd = ssd_cache_->match(hashes.subspan(c.gpu + c.host));
    return c;
  }
  bool has_host_tier() const { return host_cache_.has_value(); }
  bool has_offload_tier() const { return host_cache_.has_value() || ssd_cache_.has_value(); }
  int id() const { return id_; }
  int running() const { return static_cast<int>(running_.size()); }
  int waiting() const { return static_cast<int>(waiting_.size()); }
  int outstanding() const { return running() + waiting(); }
  double kv_usage() const { return total_blocks_ ? double(used_blocks_) / total_blocks_ : 0; }
  std::int64_t total_blocks() const { return total_blocks_; }
  const ReplicaStats& stats() const { return stats_; }
  const EngineConfig& config() const { return cfg_; }

 private:
  struct Seq {
    workload::Request req;
    std::int64_t target = 0;    // tokens to hold computed before the next token is sampled
    std::int64_t computed = 0;  // tokens whose KV is in the cache
    std::int32_t generated = 0;
    std::int64_t blocks = 0;
    std::int32_t cached = 0;
    std::int32_t preemptions = 0;
    double energy_j = 0;
    core::Ns first_scheduled = -1, first_token = -1;
    bool looked_up = false;
    bool aborted = false;
  };
  struct Item {
    int seq;
    std::int64_t tokens;
    bool prefill;
  };

  std::int64_t blocks_for(std::int64_t tokens) const {
    return (tokens + cfg_.block_size - 1) / cfg_.block_size;
  }
  int alloc_seq(workload::Request&& r);
  void plan(core::Ns now);
  bool build_batch();
  void preempt(int seq);
  int pick_victim(std::size_t from) const;
  void push_waiting(int seq, bool front);
  bool head_admissible(std::int64_t budget, std::int64_t free_blocks) const;
  // The largest chunk of at most `want` prefill tokens of `s` that keeps `base` plus the chunk
  // within the step target (want itself when there is none); 0 when less than a useful chunk fits
  // beside other work.
  std::int64_t fit_chunk(const model::BatchShape& base, const Seq& s, std::int64_t want) const;
  // Under a step target: whether `s` may join `decodes` (the decode step of every running
  // sequence, those still in prefill counted at their prompt's length) within the reserve.
  bool may_join(const model::BatchShape& decodes, const Seq& s) const;
  model::BatchShape running_as_decodes() const;
  // Critical, when scheduling by priority: held by the token budget alone, never by the target.
  bool exempt(const Seq& s) const;
  // The priority order: (priority, arrival id).
  std::pair<int, std::uint64_t> order(int seq) const {
    const auto& r = pool_[static_cast<std::size_t>(seq)].req;
    return {static_cast<int>(r.priority), r.id};
  }
  std::int64_t kv_limited_steps(std::int64_t k_max) const;
  void cache_insert(std::span<const std::uint64_t> hashes, std::int64_t block_tokens);
  double segment_seconds(std::int64_t k) const;
  void complete(int seq, core::Ns t);
  void reject_head(core::Ns now);
  void drop_aborted();
  void cut_segment(core::Ns now);

  int id_;
  std::shared_ptr<const model::StepModel> step_;
  EngineConfig cfg_;
  std::int64_t total_blocks_ = 0, used_blocks_ = 0;
  std::optional<PrefixCache> cache_;
  std::optional<PrefixCache> host_cache_;  // the host-memory tier under it
  std::optional<PrefixCache> ssd_cache_;   // the local-SSD tier under that
  std::vector<std::uint64_t> evicted_, evicted_host_;

  std::vector<Seq> pool_;
  std::vector<int> free_;
  std::vector<int> running_;
  std::deque<int> waiting_;
  std::vector<Item> batch_;
  std::vector<int> finished_;  // advance()'s scratch: the batch's sequences that finished
  int aborted_ = 0;            // sequences marked aborted and not yet freed
  bool preempted_in_plan_ = false;

  // The work in progress: one iteration, or a decode segment of seg_steps_ iterations.
  core::Ns busy_until_ = core::kNever;
  core::Ns work_start_ = 0;
  core::Ns idle_since_ = 0;
  bool off_ = false;
  double work_power_w_ = 0;
  double work_compute_share_ = 0;
  std::int64_t seg_steps_ = 0;  // 0: a single (possibly mixed) iteration
  double seg_fixed_s_ = 0, seg_per_token_s_ = 0;
  double seg_context0_ = 0;  // total context of the segment's first iteration

  std::vector<Completion> done_;
  ReplicaStats stats_;
};

}  // namespace infergrid::engine
