// Prefix caching against the Mooncake conversation trace: with an unlimited cache the hit
// fraction equals the block reuse computed from the trace itself; finite caches hit less, and
// never more as they shrink.
#include <gtest/gtest.h>

#include <unordered_set>

#include "core/paths.hpp"
#include "model/catalog.hpp"
#include "sim/site_sim.hpp"
#include "workload/trace.hpp"

using namespace infergrid;

namespace {
const std::string kTrace = core::data_dir() + "/traces/mooncake_conversation_trace.jsonl";

// Reuse straight from the trace: for each request in arrival order, the leading run of its
// block hashes that earlier requests already carried.
double trace_reuse() {
  auto src = workload::open_trace(kTrace, workload::TraceFormat::kMooncake);
  std::unordered_set<std::uint64_t> seen;
  std::uint64_t hits = 0, blocks = 0;
  workload::Request r;
  while (src->next(r)) {
    std::size_t k = 0;
    while (k < r.block_hashes.size() && seen.count(r.block_hashes[k])) ++k;
    hits += k;
    blocks += r.block_hashes.size();
    seen.insert(r.block_hashes.begin(), r.block_hashes.end());
  }
  return double(hits) / double(blocks);
}

double sim_hit_rate(std::int64_t cache_tokens) {
  const auto c = model::Catalog::builtin();
  auto pm = std::make_shared<model::PerfModel>(c.llm("llama3-8b"), c.accelerator("h100-80gb"), 1);
  sim::SiteConfig cfg;
  cfg.engine.enable_prefix_caching = true;
  cfg.engine.prefix_cache_tokens = cache_tokens;
  auto src = workload::open_trace(kTrace, workload::TraceFormat::kMooncake);
  sim::Metrics m(sim::Slo{});
  sim::SiteSim site(pm, static_cast<std::int64_t>(pm->kv_capacity_tokens(0.9)), cfg);
  const auto res = site.run(*src, m);
  EXPECT_EQ(m.completed() + m.rejected(), res.arrived);
  return double(res.totals.prefix_hit_blocks) / double(res.totals.prefix_lookup_blocks);
}
}  // namespace

TEST(PrefixCache, UnlimitedEqualsTraceReuseExactly) {
  const double want = trace_reuse();
  EXPECT_GT(want, 0.3);
  EXPECT_DOUBLE_EQ(sim_hit_rate(-1), want);
}

TEST(PrefixCache, FiniteCachesHitLessAndShrinkingNeverHelps) {
  const double unlimited = sim_hit_rate(-1);
  double prev = unlimited;
  for (std::int64_t tokens : {20'000'000LL, 5'000'000LL, 1'000'000LL, 200'000LL, 20'000LL}) {
    const double h = sim_hit_rate(tokens);
    EXPECT_LE(h, prev) << tokens;
    prev = h;
  }
  EXPECT_LT(prev, unlimited);
  EXPECT_LT(sim_hit_rate(1'000'000), unlimited);
}
