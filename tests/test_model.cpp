#include <cmath>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>

#include "core/error.hpp"
#include "core/paths.hpp"
#include "model/calibrate.hpp"
#include "model/catalog.hpp"
#include "model/perf_model.hpp"

using namespace infergrid;
using model::Catalog;

TEST(Catalog, DerivedParameterCountsMatchPublishedSizes) {
  const auto c = Catalog::builtin();
  struct Want {
    const char* name;
    double total_b, active_b;
  } wants[] = {{"llama2-7b", 6.74, 6.74},       {"llama2-70b", 68.98, 68.98},
               {"llama3-8b", 8.03, 8.03},       {"llama3-70b", 70.55, 70.55},
               {"llama3.1-405b", 405.8, 405.8}, {"mixtral-8x7b", 46.7, 12.9},
               {"qwen2.5-72b", 72.7, 72.7},     {"bloom-176b", 176.2, 176.2},
               {"deepseek-v3", 671.0, 37.0}};
  for (const auto& w : wants) {
    const auto& m = c.llm(w.name);
    EXPECT_NEAR(m.params() / 1e9 / w.total_b, 1.0, 0.02) << w.name;
    EXPECT_NEAR(m.active_params() / 1e9 / w.active_b, 1.0, 0.03) << w.name;
  }
}

TEST(Catalog, KvBytesPerTokenMatchKnownFigures) {
  const auto c = Catalog::builtin();
  EXPECT_EQ(c.llm("llama3-8b").kv_bytes_per_token(), 128 * 1024);
  EXPECT_EQ(c.llm("llama2-7b").kv_bytes_per_token(), 512 * 1024);
  EXPECT_EQ(c.llm("llama3-70b").kv_bytes_per_token(), 320 * 1024);
  // DeepSeek-V3's MLA caches a 512-d latent plus a 64-d rope key per layer: 70,272 bytes.
  EXPECT_EQ(c.llm("deepseek-v3").kv_bytes_per_token(), 61 * 576 * 2);
}

TEST(Catalog, UnknownNamesAndMisfitsAreInputErrors) {
  const auto c = Catalog::builtin();
  EXPECT_THROW(c.llm("gpt-5"), core::InputError);
  EXPECT_THROW(c.accelerator("tpu-v9"), core::InputError);
  try {
    model::PerfModel pm(c.llm("llama2-70b"), c.accelerator("l4"), 1);
    FAIL() << "should not fit";
  } catch (const core::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit"), std::string::npos) << e.what();
  }
  EXPECT_THROW(model::PerfModel(c.llm("deepseek-v3"), c.accelerator("h100-80gb"), 8),
               core::InputError);
  EXPECT_NO_THROW(model::PerfModel(c.llm("deepseek-v3"), c.accelerator("h200"), 8));
}

TEST(Catalog, YamlExtendsAndNamesBadLines) {
  const std::string path = testing::TempDir() + "/cat.yaml";
  std::ofstream(path) << "models:\n  - name: tiny\n    layers: 2\n    hidden: 256\n    heads: 4\n"
                         "    ffn: 1024\n    vocab: 1000\naccelerators:\n  - name: mi300x\n"
                         "    dense_tflops: 1307\n    hbm_tbps: 5.3\n    hbm_gb: 192\n    tdp_w: 750\n";
  auto c = Catalog::builtin();
  c.load_yaml(path);
  EXPECT_GT(c.llm("tiny").params(), 0);
  EXPECT_EQ(c.accelerator("mi300x").calibrated_from, "h100-80gb");
  std::ofstream(path) << "models:\n  - name: bad\n    layers: two\n";
  try {
    c.load_yaml(path);
    FAIL();
  } catch (const core::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("cat.yaml:3: field 'layers'"), std::string::npos) << e.what();
  }
  std::ofstream(path) << "models: [\n";
  EXPECT_THROW(c.load_yaml(path), core::InputError);
  std::ofstream(path) << "accelerators:\n  - name: inf\n    dense_tflops: .inf\n    hbm_tbps: 1\n    hbm_gb: 1\n"
                         "    tdp_w: 100\n";
  try {
    c.load_yaml(path);
    FAIL();
  } catch (const core::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("cat.yaml:3: field 'dense_tflops': must be a finite number"), std::string::npos)
        << e.what();
  }
}

TEST(Calibrate, MeasurementRowsShorterThanTheHeaderAreInputErrors) {
  // A repeated column name made the row check compare against the distinct names, and the last
  // column was then read past the row's end.
  const std::string path = testing::TempDir() + "/measured.csv";
  std::ofstream(path) << "model,model,hardware,prompt_size,batch_size,token_size,prompt_time,token_time,e2e_time,"
                         "tensor_parallel\nm,h100,128,1,16,50,20,400,2\n";
  try {
    model::load_measurements(path);
    FAIL();
  } catch (const core::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("measured.csv:2: wrong number of fields"), std::string::npos) << e.what();
  }
}

// The acceptance bar: every isolated measured Llama-2-70B group (both GPUs, TP 2/4/8, all
// prompt and batch sizes, medians of repetitions) within 10% MAPE for prompt and token time.
TEST(PerfModel, MatchesSplitwiseMeasurements) {
  const auto groups = model::load_measurements(core::data_dir() + "/perf/splitwise_measured_llama2-70b.csv");
  ASSERT_EQ(groups.size(), 114u);
  const auto v = model::validate(Catalog::builtin(), groups);
  EXPECT_EQ(v.counted, 112u);  // the two TP-2 batch-64 runs thrash (e2e 15x prompt + tokens)
  EXPECT_LE(v.mape_prompt, 0.10);
  EXPECT_LE(v.mape_token, 0.10);
  for (const auto& g : groups)
    if (!g.isolated) {
      EXPECT_TRUE(g.tp == 2 && g.batch == 64);
    }
}

TEST(PerfModel, PowerCapSlowsComputeBoundPhaseMoreThanMemoryBound) {
  const auto c = Catalog::builtin();
  const auto& m = c.llm("llama3-70b");
  const auto& a = c.accelerator("h100-80gb");
  const model::PerfModel full(m, a, 4, 1.0), capped(m, a, 4, 0.6);
  const auto f = model::predict_isolated_batch(full, 2048, 8, 64);
  const auto p = model::predict_isolated_batch(capped, 2048, 8, 64);
  // 420 W cap: prefill wants 700 W and slows; decode wants 380 W and does not.
  EXPECT_GT(p.prompt_time_ms / f.prompt_time_ms, 1.15);
  EXPECT_NEAR(p.token_time_ms / f.token_time_ms, 1.0, 1e-9);
  const model::PerfModel deep(m, a, 4, 0.4);  // 280 W: below decode's demand too
  const auto d = model::predict_isolated_batch(deep, 2048, 8, 64);
  EXPECT_GT(d.token_time_ms / f.token_time_ms, 1.01);
  EXPECT_LT(d.token_time_ms / f.token_time_ms, d.prompt_time_ms / f.prompt_time_ms);
  EXPECT_LT(p.energy_j, f.energy_j * 1.2);
}

// Decode power between the two measured phase powers by the compute-bound share: hand-worked.
// Where the wait power is measured (A100), an iteration's draw is split by time: the all-reduces
// and the fixed decode overhead at wait_w, the rest at the streaming power. By hand at batch 1,
// where the FLOPs' share is ~0; per-GPU power falls with TP as the waits grow.
TEST(PerfModel, PowerSplitsIntoStreamingAndWaitingOnAllReduces) {
  const auto c = Catalog::builtin();
  const auto& m = c.llm("llama2-70b");
  const auto& a = c.accelerator("a100-80gb");
  ASSERT_GE(a.wait_w, 0);
  double last = 1e9;
  for (int tp : {2, 4, 8}) {
    const model::PerfModel pm(m, a, tp);
    model::BatchShape s;
    s.decode_seqs = 1;
    s.decode_context = 600;
    const auto it = pm.iteration(s);
    const double steps = std::log2(double(tp));
    const double bw = a.interconnect_bw * a.calib.allreduce_bw_eff;
    const double allreduce = 2.0 * m.layers * (a.calib.allreduce_latency_s * steps + 2.0 * (tp - 1) / tp * m.hidden * 2.0 / bw);
    const double wait = allreduce + a.calib.decode_overhead_s;
    const double active = it.seconds - wait;
    const double share = (m.linear_flops_per_token() + m.lm_head_flops()) / (tp * a.dense_flops * a.calib.compute_eff) / active;
    const double expect = (active * (a.stream_w + (a.prefill_w - a.stream_w) * share) + wait * a.wait_w) / it.seconds;
    EXPECT_NEAR(it.power_w, std::min(expect, a.tdp_w), 1e-6) << tp;
    EXPECT_LT(it.power_w, last) << tp;
    last = it.power_w;
    EXPECT_NEAR(pm.decode_line(1).power_at(it.seconds), it.power_w, 1e-6) << tp;
  }
}

TEST(PerfModel, DecodePowerFollowsTheComputeBoundShare) {
  const auto c = Catalog::builtin();
  const auto& m = c.llm("llama3-70b");
  const auto& a = c.accelerator("h100-80gb");
  const model::PerfModel pm(m, a, 4);
  double last = 0;
  for (int n : {1, 16, 128, 1024}) {
    model::BatchShape s;
    s.decode_seqs = n;
    s.decode_context = 1000.0 * n;
    const auto it = pm.iteration(s);
    const double flops = 4 * a.dense_flops * a.calib.compute_eff;
    const double share = std::min(1.0, (m.linear_flops_per_token() + m.lm_head_flops()) * n / flops / it.seconds);
    EXPECT_NEAR(it.power_w, a.decode_w + (a.prefill_w - a.decode_w) * share, 1e-9) << n;
    EXPECT_GT(it.power_w, last);
    EXPECT_LE(it.power_w, a.prefill_w);
    last = it.power_w;
    // The closed-form decode line gives the same power for the same iteration time.
    EXPECT_NEAR(pm.decode_line(n).power_at(it.seconds), it.power_w, 1e-9) << n;
  }
  model::BatchShape one;
  one.decode_seqs = 1;
  one.decode_context = 1000;
  EXPECT_LT(pm.iteration(one).power_w, a.decode_w * 1.01);  // batch 1: memory-bound
  // Under a cap the draw never passes the cap.
  const model::PerfModel capped(m, a, 4, 0.5);
  model::BatchShape big;
  big.decode_seqs = 1024;
  big.decode_context = 1024e3;
  EXPECT_LE(capped.iteration(big).power_w, 0.5 * a.tdp_w + 1e-9);
}

// Average power over each measured A100 run (the CSV's average_power) against the model's:
// within 15% at TP 2 and 4; TP 8 is the known miss (measured 174 W, the model's constant decode
// power 250 W: per-GPU power falls as all-reduce waits grow), see docs/validation.md.
TEST(PerfModel, AveragePowerAgainstSplitwiseMeasurements) {
  const auto groups = model::load_measurements(core::data_dir() + "/perf/splitwise_measured_llama2-70b.csv");
  const auto v = model::validate(Catalog::builtin(), groups);
  EXPECT_EQ(v.power_counted, 30u);  // 33 A100 groups with power, 3 near idle (failed samples)
  std::map<int, std::pair<double, int>> per_tp;
  for (const auto& r : v.groups)
    if (r.power_plausible && r.measured.isolated) {
      per_tp[r.measured.tp].first += r.power_err;
      ++per_tp[r.measured.tp].second;
    }
  // wait_w and stream_w were fitted on TP 2 and 8; TP 4 is held out (docs/validation.md "Power").
  EXPECT_LE(per_tp[2].first / per_tp[2].second, 0.05);
  EXPECT_LE(per_tp[4].first / per_tp[4].second, 0.08);
  EXPECT_LE(per_tp[8].first / per_tp[8].second, 0.06);
}

// A replica's sustained request rate from the engine model: falls with longer prompts and outputs,
// and is the inverse of a prefill plus the output's share of a batch's decode steps.
TEST(PerfModel, SustainedRateFollowsTheMix) {
  const auto c = Catalog::builtin();
  const model::PerfModel pm(c.llm("llama3-8b"), c.accelerator("h100-80gb"), 1);
  const double base = model::sustained_rps(pm, 1000, 200, 256);
  EXPECT_GT(base, 1);
  EXPECT_LT(model::sustained_rps(pm, 4000, 200, 256), base);
  EXPECT_LT(model::sustained_rps(pm, 1000, 800, 256), base);
  // One sequence at a time: a prefill and 200 single-sequence decode steps.
  model::BatchShape p;
  p.prefill_tokens = 1000;
  p.prefill_pairs = 1000.0 * 1001 / 2;
  p.prefill_seqs = 1;
  const auto d = pm.decode_line(1);
  EXPECT_NEAR(model::sustained_rps(pm, 1000, 200, 1), 1 / (pm.iteration(p).seconds + 200 * (d.fixed_s + d.per_token_s * 1100)), 1e-9);
}

TEST(PerfModel, DecodeLineAgreesWithIteration) {
  const auto c = Catalog::builtin();
  const model::PerfModel pm(c.llm("mixtral-8x7b"), c.accelerator("h100-80gb"), 2);
  for (int n : {1, 7, 64}) {
    const auto line = pm.decode_line(n);
    model::BatchShape s;
    s.decode_seqs = n;
    s.decode_context = 1234.0 * n;
    EXPECT_NEAR(line.fixed_s + line.per_token_s * s.decode_context, pm.iteration(s).seconds, 1e-12);
  }
}

TEST(PerfModel, MoreTensorParallelismSpeedsUpLargePrefill) {
  const auto c = Catalog::builtin();
  const auto& m = c.llm("llama3-70b");
  const auto t2 = model::predict_isolated_batch(model::PerfModel(m, c.accelerator("h100-80gb"), 2), 4096, 1, 2);
  const auto t8 = model::predict_isolated_batch(model::PerfModel(m, c.accelerator("h100-80gb"), 8), 4096, 1, 2);
  EXPECT_LT(t8.prompt_time_ms, t2.prompt_time_ms);
  const auto b = model::predict_isolated_batch(model::PerfModel(m, c.accelerator("b200"), 2), 4096, 1, 2);
  EXPECT_LT(b.prompt_time_ms, t2.prompt_time_ms);
}

// Expert parallelism against published figures (docs/validation.md "Expert parallelism").
namespace {
// Output tokens/s per 8-GPU node of a decode at `context` tokens: at `batch_per_gpu`, or (0) at
// the largest batch whose step stays within step_s (and fits the KV cache).
double ep_decode_tok_s_per_node(const model::PerfModel& pm, double context, double step_s, int batch_per_gpu = 0) {
  int b = batch_per_gpu * pm.accelerators();
  if (b == 0) {
    const int kv_fit = static_cast<int>(pm.kv_capacity_tokens(0.9) / context);
    b = 1;
    for (int n = 1; n <= kv_fit; ++n) {
      const auto d = pm.decode_line(n);
      if (d.fixed_s + d.per_token_s * n * context > step_s) break;
      b = n;
    }
  }
  const auto d = pm.decode_line(b);
  return b / (d.fixed_s + d.per_token_s * b * context) / pm.accelerators() * 8;
}
}  // namespace

// SGLang's large-scale EP (LMSYS blog, 2025-05-05): decode of DeepSeek-V3 over 9 nodes of 8 H100s
// (EP72, data-parallel attention), 2,000-token inputs, 256 sequences per GPU: 22.3k output
// tokens/s per node. The model: within 20%. Against the same GPUs as TP8 replicas (on H200,
// where the weights fit 8 GPUs) EP gives several times the tokens per node ("up to 5x").
TEST(PerfModel, ExpertParallelDeepSeekDecodeWithinTwentyPercentOfSglangsMeasurement) {
  const auto c = Catalog::builtin();
  const model::PerfModel ep72(c.llm("deepseek-v3"), c.accelerator("h100-80gb"), 1, 1.0, 72);
  EXPECT_EQ(ep72.accelerators(), 72);
  EXPECT_GT(ep72.all_to_all_s(256 * 72), 0.0);
  const double tok_s = ep_decode_tok_s_per_node(ep72, 2050, 0, 256);
  EXPECT_NEAR(tok_s / 22.3e3, 1.0, 0.2) << tok_s;
  const model::PerfModel tp8(c.llm("deepseek-v3"), c.accelerator("h200"), 8);
  const model::PerfModel ep16(c.llm("deepseek-v3"), c.accelerator("h200"), 1, 1.0, 16);
  const double gain = ep_decode_tok_s_per_node(ep16, 2050, 0.05) / ep_decode_tok_s_per_node(tp8, 2050, 0.05);
  EXPECT_GT(gain, 3.0);
  EXPECT_LT(gain, 10.0);
  // DeepSeek's own figure (Inference System Overview, 2025-03-01: EP144 on H800, 20-22 tokens/s
  // per user, 4,989 tokens of KV per output token) is 14.8k per node as a day's average, below
  // what a node sustains at its peak: the model's 50 ms step gives more, within 35%.
  const model::PerfModel ep144(c.llm("deepseek-v3"), c.accelerator("h800"), 1, 1.0, 144);
  const double ds = ep_decode_tok_s_per_node(ep144, 4989, 0.05);
  EXPECT_GT(ds, 14.8e3);
  EXPECT_LT(ds, 1.35 * 14.8e3);
  // Dense models and groups that do not divide are errors that name the flag.
  EXPECT_THROW(model::PerfModel(c.llm("llama3-70b"), c.accelerator("h100-80gb"), 8, 1.0, 16), core::InputError);
  EXPECT_THROW(model::PerfModel(c.llm("deepseek-v3"), c.accelerator("h800"), 8, 1.0, 12), core::InputError);
}
