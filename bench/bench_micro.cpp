// Micro-benchmarks of the hot pieces: the performance model's iteration cost, the closed-form
// decode against iterating token by token, and the quantile sketch.
#include <benchmark/benchmark.h>

#include "core/sketch.hpp"
#include "model/catalog.hpp"
#include "model/perf_model.hpp"

using namespace infergrid;

static void BM_IterationCost(benchmark::State& st) {
  const auto c = model::Catalog::builtin();
  const model::PerfModel pm(c.llm("llama3-70b"), c.accelerator("h100-80gb"), 4);
  model::BatchShape s;
  s.prefill_tokens = 2048;
  s.prefill_pairs = 2048.0 * 1024;
  s.prefill_seqs = 2;
  s.decode_seqs = 60;
  s.decode_context = 60 * 1500;
  for (auto _ : st) {
    s.decode_context += 1;
    benchmark::DoNotOptimize(pm.iteration(s));
  }
}
BENCHMARK(BM_IterationCost);

// 500 decode iterations of 64 sequences: summed one by one vs the closed form the replica uses.
static void BM_DecodeStepwise(benchmark::State& st) {
  const auto c = model::Catalog::builtin();
  const model::PerfModel pm(c.llm("llama3-70b"), c.accelerator("h100-80gb"), 4);
  for (auto _ : st) {
    double t = 0;
    model::BatchShape s;
    s.decode_seqs = 64;
    for (int k = 0; k < 500; ++k) {
      s.decode_context = 64.0 * (1000 + k);
      t += pm.iteration(s).seconds;
    }
    benchmark::DoNotOptimize(t);
  }
}
BENCHMARK(BM_DecodeStepwise);

static void BM_DecodeClosedForm(benchmark::State& st) {
  const auto c = model::Catalog::builtin();
  const model::PerfModel pm(c.llm("llama3-70b"), c.accelerator("h100-80gb"), 4);
  for (auto _ : st) {
    const auto line = pm.decode_line(64);
    const double k = 500, n = 64, s0 = 64.0 * 1000;
    benchmark::DoNotOptimize(k * line.fixed_s + line.per_token_s * (k * s0 + n * k * (k - 1) / 2));
  }
}
BENCHMARK(BM_DecodeClosedForm);

static void BM_SketchAdd(benchmark::State& st) {
  core::QuantileSketch s;
  double x = 1.0;
  for (auto _ : st) {
    x = x * 1.0001 + 0.37;
    if (x > 1e5) x = 1.0;
    s.add(x);
  }
}
BENCHMARK(BM_SketchAdd);

BENCHMARK_MAIN();
