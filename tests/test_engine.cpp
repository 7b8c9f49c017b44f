#include <gtest/gtest.h>

#include <tuple>

#include <algorithm>

#include "core/paths.hpp"
#include "model/catalog.hpp"
#include "test_util.hpp"
#include "workload/trace.hpp"

using namespace infergrid;
using testing_util::ConstantStep;
using testing_util::run_site;
using testing_util::VectorSource;
using workload::Request;

namespace {
std::shared_ptr<model::PerfModel> h100_70b(int tp) {
  const auto c = model::Catalog::builtin();
  return std::make_shared<model::PerfModel>(c.llm("llama2-70b"), c.accelerator("h100-80gb"), tp);
}
Request req(std::uint64_t id, double t_s, int prompt, int output,
            workload::Priority p = workload::Priority::kInteractive) {
  Request r;
  r.id = id;
  r.arrival = core::from_seconds(t_s);
  r.prompt_tokens = prompt;
  r.output_tokens = output;
  r.priority = p;
  return r;
}
std::vector<Request> azure_head(std::size_t n) {
  auto src = workload::open_trace(core::data_dir() + "/traces/AzureLLMInferenceTrace_conv.csv",
                                  workload::TraceFormat::kAzure);
  std::vector<Request> v;
  Request r;
  while (v.size() < n && src->next(r)) v.push_back(r);
  return v;
}
}  // namespace

// One request alone: TTFT is one prefill iteration and the rest is T-1 decode iterations,
// the same sums `infergrid perf` makes from the model.
TEST(Replica, LoneRequestTimelineMatchesTheModel) {
  auto pm = h100_70b(4);
  VectorSource src({req(0, 1.0, 512, 128)});
  sim::SiteConfig cfg;
  const auto run = run_site(pm, 1'000'000, cfg, src);
  ASSERT_EQ(run.completions.size(), 1u);
  const auto& c = run.completions[0];
  const auto p = model::predict_isolated_batch(*pm, 512, 1, 128);
  EXPECT_NEAR(core::to_ms(c.first_token - c.arrival), p.prompt_time_ms, 1e-5);
  EXPECT_NEAR(core::to_ms(c.finish - c.arrival), p.e2e_time_ms, 1e-3);
  EXPECT_EQ(c.output_tokens, 128);
  EXPECT_NEAR(c.energy_j / p.energy_j, 1.0, 1e-6);  // prefill at 700 W, decode at 380 W, x4 GPUs
  EXPECT_EQ(run.result.totals.iterations, 1u);  // the prefill; decodes ran as one segment
  EXPECT_EQ(run.result.totals.segments, 1u);
}

// Closed-form decode segments must give what iterating token by token gives.
TEST(Replica, FastForwardEqualsStepByStep) {
  auto pm = h100_70b(8);
  sim::SiteConfig cfg;
  cfg.replicas = 2;
  cfg.engine.max_num_seqs = 16;
  cfg.engine.max_num_batched_tokens = 2048;
  auto reqs = azure_head(1500);
  VectorSource a(reqs), b(reqs);
  const auto fast = run_site(pm, 60000, cfg, a);
  cfg.engine.fast_forward = false;
  const auto slow = run_site(pm, 60000, cfg, b);
  ASSERT_EQ(fast.completions.size(), slow.completions.size());
  EXPECT_LT(fast.result.events * 3, slow.result.events);
  auto by_id = [](std::vector<engine::Completion> v) {
    std::sort(v.begin(), v.end(), [](auto& x, auto& y) { return x.id < y.id; });
    return v;
  };
  const auto f = by_id(fast.completions), s = by_id(slow.completions);
  double worst = 0;
  for (std::size_t i = 0; i < f.size(); ++i) {
    ASSERT_EQ(f[i].id, s[i].id);
    EXPECT_EQ(f[i].output_tokens, s[i].output_tokens);
    EXPECT_EQ(f[i].replica, s[i].replica);
    worst = std::max(worst, std::abs(core::to_ms(f[i].finish - s[i].finish)));
  }
  EXPECT_LT(worst, 0.01) << "ms";  // only nanosecond rounding may differ
  EXPECT_NEAR(fast.result.totals.energy_j / slow.result.totals.energy_j, 1.0, 1e-6);
}

TEST(Replica, ChunkedPrefillSplitsLongPromptsUnderTheBudget) {
  auto pm = h100_70b(8);
  sim::SiteConfig cfg;
  cfg.engine.max_num_batched_tokens = 8192;
  VectorSource src({req(0, 0, 20000, 2)});
  const auto run = run_site(pm, 1'000'000, cfg, src);
  EXPECT_EQ(run.result.totals.iterations, 3u);  // 8192 + 8192 + 3616 tokens
  EXPECT_EQ(run.result.totals.segments, 1u);    // then one decode
  model::BatchShape s1, s3;
  s1.prefill_tokens = 8192, s1.prefill_seqs = 1, s1.prefill_pairs = 8192.0 * (0 + 8193 / 2.0);
  model::BatchShape s2 = s1;
  s2.prefill_pairs = 8192.0 * (8192 + 8193 / 2.0);
  s3.prefill_tokens = 3616, s3.prefill_seqs = 1, s3.prefill_pairs = 3616.0 * (16384 + 3617 / 2.0);
  const double ttft = pm->iteration(s1).seconds + pm->iteration(s2).seconds + pm->iteration(s3).seconds;
  EXPECT_NEAR(core::to_seconds(run.completions[0].first_token), ttft, 1e-6);
}

TEST(Replica, PreemptsByRecomputeWhenKvRunsOutAndLosesNothing) {
  auto pm = h100_70b(8);
  sim::SiteConfig cfg;
  cfg.engine.max_num_seqs = 64;
  std::vector<Request> v;
  for (int i = 0; i < 40; ++i) v.push_back(req(i, 0.001 * i, 300, 400));
  v.push_back(req(40, 0.1, 9000, 5));  // never fits in 8,000 tokens of KV
  VectorSource src(v);
  const auto run = run_site(pm, 8000, cfg, src);
  EXPECT_GT(run.result.totals.preemptions, 0u);
  ASSERT_EQ(run.completions.size(), 41u);
  int rejected = 0;
  for (const auto& c : run.completions) {
    if (c.rejected) {
      ++rejected;
      EXPECT_EQ(c.id, 40u);
    } else {
      EXPECT_EQ(c.output_tokens, 400);
    }
  }
  EXPECT_EQ(rejected, 1);
}

TEST(Replica, PrioritySchedulingServesCriticalFirst) {
  auto step = std::make_shared<ConstantStep>(0.01, 0.01);
  sim::SiteConfig cfg;
  cfg.engine.max_num_seqs = 1;
  cfg.engine.priority_scheduling = true;
  std::vector<Request> v;
  for (int i = 0; i < 5; ++i) v.push_back(req(i, 0, 10, 10, workload::Priority::kBatch));
  v.push_back(req(5, 0.001, 10, 10, workload::Priority::kCritical));
  VectorSource src(v);
  const auto run = run_site(step, 100000, cfg, src);
  ASSERT_EQ(run.completions.size(), 6u);
  EXPECT_EQ(run.completions[0].id, 0u);  // already running
  EXPECT_EQ(run.completions[1].id, 5u);  // jumps the queue of batch requests
}

TEST(Replica, MaxNumSeqsCapsTheBatch) {
  auto step = std::make_shared<ConstantStep>(0.01, 0.01);
  sim::SiteConfig cfg;
  cfg.engine.max_num_seqs = 2;
  std::vector<Request> v;
  for (int i = 0; i < 4; ++i) v.push_back(req(i, 0, 10, 10));
  VectorSource src(v);
  const auto run = run_site(step, 100000, cfg, src);
  // Request 0 starts alone at its arrival; 1 joins at the next iteration boundary (10 ms);
  // 2 and 3 wait for free slots. Each takes 1 prefill + 9 decodes = 100 ms.
  const double want[] = {0.1, 0.11, 0.2, 0.21};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(run.completions[static_cast<std::size_t>(i)].id, static_cast<std::uint64_t>(i));
    EXPECT_NEAR(core::to_seconds(run.completions[static_cast<std::size_t>(i)].finish), want[i], 1e-9);
  }
}

TEST(Site, RoutersSpreadLoadAndAccountForEveryRequest) {
  auto pm = h100_70b(8);
  for (const char* router : {"round-robin", "least-outstanding", "power-of-two", "central-queue"}) {
    sim::SiteConfig cfg;
    cfg.replicas = 4;
    cfg.router = router;
    VectorSource src(azure_head(3000));
    const auto run = run_site(pm, 200000, cfg, src);
    EXPECT_EQ(run.completions.size(), 3000u) << router;
    std::vector<int> per(4);
    for (const auto& c : run.completions) ++per[static_cast<std::size_t>(c.replica)];
    for (int n : per) EXPECT_GT(n, 300) << router;
  }
}

// A client that leaves: a waiting request leaves at once, a running one at the end of the
// iteration in progress (a decode segment is cut there); its blocks come back and it completes
// nothing; the others run as if it had never been there after that point.
TEST(Replica, AbortFreesWaitingAtOnceAndRunningAtTheIterationEnd) {
  auto step = std::make_shared<testing_util::ConstantStep>(0.010, 0.001);
  engine::EngineConfig cfg;
  cfg.max_num_seqs = 1;  // one runs, the other waits
  engine::Replica r(0, step, cfg, 16 * 1000);
  r.enqueue(req(1, 0, 100, 1000), 0);
  r.enqueue(req(2, 0, 100, 1000), 0);
  EXPECT_EQ(r.running(), 1);
  EXPECT_EQ(r.waiting(), 1);
  EXPECT_TRUE(r.abort(2, core::from_seconds(0.001)));  // waiting: gone now
  EXPECT_EQ(r.waiting(), 0);
  EXPECT_FALSE(r.abort(99, core::from_seconds(0.001)));
  r.advance(r.next_event_time());  // the prefill (10 ms); then one decode segment of 999 steps
  const core::Ns seg_end = r.next_event_time();
  EXPECT_NEAR(core::to_seconds(seg_end), 0.010 + 0.999, 1e-6);
  const core::Ns t = core::from_seconds(0.5003);
  EXPECT_TRUE(r.abort(1, t));
  EXPECT_NEAR(core::to_seconds(r.next_event_time()), 0.010 + 0.491, 1e-9);  // cut at the next step boundary
  EXPECT_GT(r.kv_usage(), 0);
  r.advance(r.next_event_time());
  EXPECT_EQ(r.running(), 0);
  EXPECT_EQ(r.kv_usage(), 0);
  EXPECT_EQ(r.next_event_time(), core::kNever);
  EXPECT_TRUE(r.completions().empty());
}

namespace {
// 10 ms per iteration, 0.1 ms per decoding sequence, 0.01 ms per prefill token.
class LinearStep final : public model::StepModel {
 public:
  model::IterationCost iteration(const model::BatchShape& s) const override {
    if (s.prefill_tokens + s.decode_seqs <= 0) return {0, 10};
    return {0.010 + 0.0001 * s.decode_seqs + 0.00001 * s.prefill_tokens, 100};
  }
  model::DecodeLine decode_line(int n) const override { return {0.010 + 0.0001 * n, 0, 100}; }
  double idle_power_w() const override { return 10; }
  int accelerators() const override { return 1; }
};
// n short prompts with long outputs at t = 0, then one 10,000-token prompt at t = 1 s.
std::vector<Request> decoders_then_long_prompt(int n) {
  std::vector<Request> v;
  for (int i = 0; i < n; ++i) v.push_back(req(static_cast<std::uint64_t>(i), 0, 10, 1000));
  v.push_back(req(static_cast<std::uint64_t>(n), 1.0, 10000, 2));
  return v;
}
}  // namespace

// Sarathi-Serve's budget from the TPOT SLO, by hand: beside 20 decodes (12 ms) a 30 ms step
// target leaves 18 ms, 1,800 prompt tokens a chunk: 5 chunks of 30 ms and the last 1,000 tokens
// in 22 ms, 172 ms from the first chunk to the first token. Without it: 8,172 tokens (the 8,192
// budget less the 20 decodes) in 93.72 ms, then 1,828 in 30.28 ms, 124 ms, and every running
// decode waits 93.72 ms for one of its tokens. (The prefill's total cost is the same either way.)
TEST(Replica, StepTargetFitsPrefillChunksBesideTheRunningDecodes) {
  auto step = std::make_shared<LinearStep>();
  sim::SiteConfig cfg;
  auto prefill_span = [&](double target_s) {
    cfg.engine.step_target_s = target_s;
    VectorSource src(decoders_then_long_prompt(20));
    const auto run = run_site(step, 10'000'000, cfg, src);
    EXPECT_EQ(run.completions.size(), 21u);
    double span = -1;
    for (const auto& c : run.completions)
      if (c.id == 20) span = core::to_seconds(c.first_token - c.first_scheduled);
    return span;
  };
  EXPECT_NEAR(prefill_span(0.030), 0.172, 1e-6);
  EXPECT_NEAR(prefill_span(0), 0.124, 1e-6);
}

// With no share of the step kept for prefill, when not even a useful chunk fits beside the
// decodes (200 decodes take the whole 30 ms), the new prompt waits for them to finish; the decodes
// are never held back.
TEST(Replica, StepTargetHoldsANewPromptWhileTheDecodesFillTheStep) {
  auto step = std::make_shared<LinearStep>();
  for (const double target : {0.030, 0.0}) {
    sim::SiteConfig cfg;
    cfg.engine.step_target_s = target;
    cfg.engine.step_prefill_reserve = 0;
    VectorSource src(decoders_then_long_prompt(200));
    const auto run = run_site(step, 10'000'000, cfg, src);
    ASSERT_EQ(run.completions.size(), 201u);
    core::Ns last_decoder = 0, long_start = 0;
    for (const auto& c : run.completions) {
      if (c.id == 200) long_start = c.first_scheduled;
      else last_decoder = std::max(last_decoder, c.finish);
    }
    if (target > 0) EXPECT_GE(long_start, last_decoder);
    else EXPECT_NEAR(core::to_seconds(long_start), 1.0, 0.05);  // joins at the next iteration
  }
}

// The share kept for prefill caps the decode batch: with 29.5% of a 30 ms target kept, a sequence
// joins while the decode step of all of them stays within 21.15 ms, 10 ms + 0.1 ms x 111.5: of
// 200 requests at once, 111 run together and the rest wait for them.
TEST(Replica, StepPrefillReserveCapsTheDecodeBatch) {
  auto step = std::make_shared<LinearStep>();
  sim::SiteConfig cfg;
  cfg.engine.step_target_s = 0.030;
  cfg.engine.step_prefill_reserve = 0.295;
  std::vector<Request> v;
  for (int i = 0; i < 200; ++i) v.push_back(req(static_cast<std::uint64_t>(i), 0, 10, 100));
  VectorSource src(v);
  const auto run = run_site(step, 10'000'000, cfg, src);
  ASSERT_EQ(run.completions.size(), 200u);
  std::vector<std::pair<core::Ns, int>> edges;
  for (const auto& c : run.completions) {
    edges.emplace_back(c.first_scheduled, +1);
    edges.emplace_back(c.finish, -1);
  }
  std::sort(edges.begin(), edges.end());  // a finish (-1) before a start (+1) at the same instant
  int now = 0, most = 0;
  for (const auto& [t, d] : edges) most = std::max(most, now += d);
  EXPECT_EQ(most, 111);
}

// A request whose KV came with it (prefilled at another site, disaggregated serving): the engine
// takes blocks for the whole prompt at admission, computes only the last prompt token (one
// iteration: its context is the prompt) and decodes the rest; its first token comes after one
// decode-sized step, not after a prefill of 4,096 tokens.
TEST(Replica, KvThatCameWithTheRequestIsNotPrefilledAgain) {
  auto pm = h100_70b(4);
  Request r = req(0, 1.0, 4096, 64);
  r.kv_ready_tokens = 4096;
  VectorSource src({r});
  sim::SiteConfig cfg;
  const auto run = run_site(pm, 1'000'000, cfg, src);
  ASSERT_EQ(run.completions.size(), 1u);
  const auto& c = run.completions[0];
  model::BatchShape one;
  one.prefill_tokens = 1;
  one.prefill_pairs = 4096;  // the last token attends to the 4,095 before it and itself
  one.prefill_seqs = 1;
  EXPECT_NEAR(core::to_ms(c.first_token - c.arrival), pm->iteration(one).seconds * 1000, 1e-5);
  const auto full = model::predict_isolated_batch(*pm, 4096, 1, 64);
  EXPECT_LT(core::to_ms(c.first_token - c.arrival), 0.1 * full.prompt_time_ms);
  // The decode after it is the same as after a local prefill.
  EXPECT_NEAR(core::to_ms(c.finish - c.first_token), full.e2e_time_ms - full.prompt_time_ms, 0.01 * full.e2e_time_ms);
  EXPECT_EQ(c.output_tokens, 64);
}

// The host-memory tier under the prefix cache: blocks the GPU's cache evicts (LRU) land there; a
// lookup reports the GPU's leading run and the host's run after it; warming a prefix brings its
// blocks back to the GPU's cache and pushes the least recent out to the host in turn.
namespace {
// A replica's cached blocks, tier by tier: (GPU, host memory, SSD).
std::tuple<std::size_t, std::size_t, std::size_t> tiers(const engine::Replica::CachedBlocks& c) {
  return {c.gpu, c.host, c.ssd};
}
}  // namespace

TEST(Replica, TheHostTierKeepsWhatTheGpuCacheEvicts) {
  const auto c = model::Catalog::builtin();
  auto pm = std::make_shared<model::PerfModel>(c.llm("llama3-8b"), c.accelerator("h100-80gb"), 1);
  engine::EngineConfig cfg;
  cfg.enable_prefix_caching = true;
  cfg.prefix_cache_tokens = 16 * 256;  // 16 blocks of 256 tokens on the GPU
  cfg.host_kv_tokens = 64 * 256;       // 64 in host memory
  engine::Replica rep(0, pm, cfg, 1'000'000);
  ASSERT_TRUE(rep.has_host_tier());
  std::vector<std::uint64_t> a, b;
  for (std::uint64_t i = 0; i < 16; ++i) a.push_back(1000 + i), b.push_back(2000 + i);
  rep.warm_prefix(a, 256);
  EXPECT_EQ(tiers(rep.cached_blocks(a)), std::make_tuple(std::size_t{16}, std::size_t{0}, std::size_t{0}));
  rep.warm_prefix(b, 256);  // the GPU holds 16 blocks: all of a goes to the host tier
  EXPECT_EQ(tiers(rep.cached_blocks(b)), std::make_tuple(std::size_t{16}, std::size_t{0}, std::size_t{0}));
  EXPECT_EQ(tiers(rep.cached_blocks(a)), std::make_tuple(std::size_t{0}, std::size_t{16}, std::size_t{0}));
  // Half of a back on the GPU: its first 8 blocks there, the other 8 still in host memory.
  rep.warm_prefix(std::span<const std::uint64_t>(a.data(), 8), 256);
  EXPECT_EQ(tiers(rep.cached_blocks(a)), std::make_tuple(std::size_t{8}, std::size_t{8}, std::size_t{0}));
  EXPECT_EQ(tiers(rep.cached_blocks(b)), std::make_tuple(std::size_t{0}, std::size_t{8}, std::size_t{0}));  // b's first 8 went down
  // Without the tier, evicted blocks are gone.
  cfg.host_kv_tokens = 0;
  engine::Replica plain(1, pm, cfg, 1'000'000);
  EXPECT_FALSE(plain.has_host_tier());
  plain.warm_prefix(a, 256);
  plain.warm_prefix(b, 256);
  EXPECT_EQ(tiers(plain.cached_blocks(a)), std::make_tuple(std::size_t{0}, std::size_t{0}, std::size_t{0}));
}

// Down the tiers: what the GPU evicts goes to host memory, what host memory evicts to the SSD,
// and a prompt's run of blocks is read across them in that order; without a host tier the GPU's
// evictions go straight to the SSD.
TEST(Replica, TheSsdTierKeepsWhatHostMemoryEvicts) {
  const auto c = model::Catalog::builtin();
  auto pm = std::make_shared<model::PerfModel>(c.llm("llama3-8b"), c.accelerator("h100-80gb"), 1);
  engine::EngineConfig cfg;
  cfg.enable_prefix_caching = true;
  cfg.prefix_cache_tokens = 16 * 256;  // 16 blocks on the GPU
  cfg.host_kv_tokens = 16 * 256;       // 16 in host memory
  cfg.ssd_kv_tokens = 64 * 256;        // 64 on the SSD
  engine::Replica rep(0, pm, cfg, 1'000'000);
  ASSERT_TRUE(rep.has_offload_tier());
  std::vector<std::uint64_t> a, b, d;
  for (std::uint64_t i = 0; i < 16; ++i) a.push_back(1000 + i), b.push_back(2000 + i), d.push_back(3000 + i);
  rep.warm_prefix(a, 256);
  rep.warm_prefix(b, 256);  // a to host memory
  rep.warm_prefix(d, 256);  // b to host memory, a on to the SSD
  EXPECT_EQ(tiers(rep.cached_blocks(d)), std::make_tuple(std::size_t{16}, std::size_t{0}, std::size_t{0}));
  EXPECT_EQ(tiers(rep.cached_blocks(b)), std::make_tuple(std::size_t{0}, std::size_t{16}, std::size_t{0}));
  EXPECT_EQ(tiers(rep.cached_blocks(a)), std::make_tuple(std::size_t{0}, std::size_t{0}, std::size_t{16}));
  // a's first 8 back on the GPU push d's first 8 to host memory, and b's first 8 on to the SSD.
  rep.warm_prefix(std::span<const std::uint64_t>(a.data(), 8), 256);
  EXPECT_EQ(tiers(rep.cached_blocks(a)), std::make_tuple(std::size_t{8}, std::size_t{0}, std::size_t{8}));
  EXPECT_EQ(tiers(rep.cached_blocks(d)), std::make_tuple(std::size_t{0}, std::size_t{8}, std::size_t{0}));
  EXPECT_EQ(tiers(rep.cached_blocks(b)), std::make_tuple(std::size_t{0}, std::size_t{0}, std::size_t{8}));
  // No host tier: the GPU's evictions land on the SSD.
  cfg.host_kv_tokens = 0;
  engine::Replica ssd_only(1, pm, cfg, 1'000'000);
  EXPECT_FALSE(ssd_only.has_host_tier());
  ASSERT_TRUE(ssd_only.has_offload_tier());
  ssd_only.warm_prefix(a, 256);
  ssd_only.warm_prefix(b, 256);
  EXPECT_EQ(tiers(ssd_only.cached_blocks(a)), std::make_tuple(std::size_t{0}, std::size_t{0}, std::size_t{16}));
}
