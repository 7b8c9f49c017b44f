#include "model/perf_model.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "core/error.hpp"

namespace infergrid::model {

namespace {
// Dynamic power goes as f * V^2 and V tracks f, so a phase that wants p watts runs at a clock
// fraction of ((cap - idle) / (p - idle))^(1/3) under a cap below p, and at full clock above.
double clock_fraction(double demand_w, double cap_w, double idle_w) {
  if (demand_w <= cap_w) return 1.0;
  const double f = (cap_w - idle_w) / (demand_w - idle_w);
  return f <= 0 ? 0.05 : std::cbrt(f);
}
}  // namespace

namespace {
// Routed-expert parameters of an MoE model (0 for a dense one), and the expected number of
// distinct experts `tokens` tokens touch in a layer.
double routed_params(const LlmModel& m) {
  return m.experts == 0 ? 0 : double(m.layers - m.dense_layers) * m.mlp_matrices * m.hidden * double(m.ffn) * m.experts;
}
double experts_touched(const LlmModel& m, double tokens) {
  return m.experts * (1.0 - std::pow(1.0 - double(m.active_experts) / m.experts, tokens));
}
// DeepEP's low-latency kernels reach about 39-40 GB/s of a 400 Gbit/s NIC (deepseek-ai/DeepEP README:
// dispatch 39 GB/s, combine 40 GB/s at EP 128 over RDMA): 0.8 of its line rate.
constexpr double kAllToAllEff = 0.8;
}  // namespace

PerfModel::PerfModel(const LlmModel& m, const Accelerator& a, int tp, double power_cap, int ep)
    : model_(m), accel_(a), tp_(tp), cap_w_(power_cap * a.tdp_w) {
  if (tp < 1) core::fail_flag("tp", "must be at least 1");
  if (ep < 1) core::fail_flag("ep", "must be at least 1");
  if (ep > 1) {
    if (m.experts == 0) core::fail_flag("ep", fmt::format("{} is dense: expert parallelism needs a mixture-of-experts model", m.name));
    if (ep % tp != 0) core::fail_flag("ep", fmt::format("{} is not a multiple of tp {} (data-parallel attention groups of tp GPUs)", ep, tp));
    if (ep > m.experts) core::fail_flag("ep", fmt::format("{} GPUs for {} experts: at most one GPU per expert", ep, m.experts));
  }
  ep_ = ep;
  gpus_ = ep > 1 ? ep : tp;
  dp_ = ep > 1 ? ep / tp : 1;
  const double routed = routed_params(m) * m.weight_bytes_per_param;
  held_weight_bytes_per_gpu_ = ep > 1 ? (m.weight_bytes() - routed) / tp + routed / ep : m.weight_bytes() / tp;
  if (!(power_cap > 0 && power_cap <= 1)) core::fail_flag("power-cap", "must be in (0, 1]");
  if (cap_w_ <= a.idle_w)
    core::fail_flag("power-cap", fmt::format("{:.0f} W is below the idle power {:.0f} W of {}",
                                             cap_w_, a.idle_w, a.name));
  // Compute-bound work draws prefill power and slows with the clock; memory-bound work draws
  // decode power, and HBM bandwidth only suffers when even that demand exceeds the cap.
  clock_compute_ = clock_fraction(a.prefill_w, cap_w_, a.idle_w);
  clock_memory_ = clock_fraction(a.decode_w, cap_w_, a.idle_w);
  linear_flops_tok_ = m.linear_flops_per_token();
  lm_head_flops_ = m.lm_head_flops();
  attn_flops_pair_ = m.attention_flops_per_pair();
  kv_bytes_tok_ = m.kv_bytes_per_token();
  dense_weight_bytes_ = m.experts == 0 ? m.weight_bytes() : -1;
  flops_ = gpus_ * a.dense_flops * a.calib.compute_eff * clock_compute_;
  bytes_s_ = gpus_ * a.hbm_bandwidth * a.calib.memory_eff * clock_memory_;
  // A decoding sequence attends over each context token once per step: its KV read, or the
  // attention FLOPs where they take longer (MLA's absorbed attention: 17 MFLOP per pair).
  context_tok_s_ = std::max(kv_bytes_tok_ / bytes_s_, attn_flops_pair_ / flops_);
  if (kv_capacity_tokens(0.9) < 1) {
    core::fail_flag(ep > 1 ? "ep" : "tp", fmt::format("{} needs {:.1f} GB of weights: it does not fit on {} x {} "
                                      "({:.0f} GB each, 90% usable, {:.1f} GB runtime reserve)",
                                      m.name, m.weight_bytes() / 1e9, gpus_, a.name,
                                      a.hbm_bytes / 1e9, a.runtime_reserve_bytes / 1e9));
  }
}

double PerfModel::kv_bytes_per_token_per_gpu() const {
  if (model_.kv_lora_rank > 0) return model_.kv_bytes_per_token();  // latent replicated per GPU
  // KV heads are split across the TP group; with fewer heads than GPUs they are replicated.
  return model_.kv_bytes_per_token() / std::min(tp_, model_.kv_heads);
}

double PerfModel::kv_capacity_tokens(double util) const {
  const double free = accel_.hbm_bytes * util - held_weight_bytes_per_gpu_ - accel_.runtime_reserve_bytes;
  // Each data-parallel attention group holds its own sequences' KV.
  return free <= 0 ? 0 : dp_ * std::floor(free / kv_bytes_per_token_per_gpu());
}

double PerfModel::weights_read(double tokens) const {
  if (dense_weight_bytes_ >= 0) return dense_weight_bytes_;
  const double all = model_.weight_bytes_read(tokens);
  if (ep_ == 1) return all;
  // Every attention group reads its copy of what is not a routed expert; each routed expert the
  // step touches is read once, by the GPU holding it.
  const double routed = double(model_.layers - model_.dense_layers) * model_.mlp_matrices * model_.hidden *
                        double(model_.ffn) * experts_touched(model_, tokens) * model_.weight_bytes_per_param;
  return all + (dp_ - 1) * (all - routed);
}

double PerfModel::all_to_all_s(double tokens) const {
  if (ep_ <= 1) return 0;
  // Per GPU: its tokens, each sent to active_experts experts (fp8 dispatch, 1 byte per element)
  // and answered (bf16 combine, 2 bytes), the share held elsewhere, every MoE layer; over NVLink
  // within one node, over the NIC across nodes.
  const double per_gpu = tokens / ep_ * model_.active_experts * model_.hidden * 3.0 *
                         (model_.layers - model_.dense_layers) * (ep_ - 1.0) / ep_;
  const double link = ep_ <= 8 ? accel_.interconnect_bw : accel_.network_bw;
  return per_gpu / (link * kAllToAllEff);
}

double PerfModel::allreduce_s(double tokens) const {
  if (tp_ == 1) return 0;
  tokens /= dp_;  // each attention group reduces its own tokens
  // Two all-reduces per layer (after attention and after the MLP), ring bandwidth term plus a
  // latency that grows with the steps of the reduction tree.
  const auto& c = accel_.calib;
  const double bytes = tokens * model_.hidden * 2.0;
  const double bw = accel_.interconnect_bw * c.allreduce_bw_eff;
  const double one = c.allreduce_latency_s * std::log2(double(tp_)) +
                     2.0 * (tp_ - 1) / tp_ * bytes / bw;
  return 2.0 * model_.layers * one;
}

IterationCost PerfModel::iteration(const BatchShape& s) const {
  const double tokens = s.prefill_tokens + s.decode_seqs;
  if (tokens <= 0) return {0, accel_.idle_w};
  const auto& c = accel_.calib;
  const double sampled = s.prefill_seqs + s.decode_seqs;
  const double lin_flops = linear_flops_tok_ * tokens + lm_head_flops_ * sampled;
  const double linear = std::max(lin_flops / flops_, weights_read(tokens) / bytes_s_);
  const double attention = attn_flops_pair_ * s.prefill_pairs / flops_ + context_tok_s_ * s.decode_context;
  const bool prefill = s.prefill_tokens > 0;
  const double overhead = prefill ? c.prefill_overhead_s + c.prefill_seq_overhead_s * s.prefill_seqs
                                  : c.decode_overhead_s;
  // Expert parallelism: the all-to-all of one micro-batch runs under the other's computation;
  // what it takes beyond that is waited for.
  const double work = linear + attention + allreduce_s(tokens);
  const double a2a_wait = std::max(0.0, all_to_all_s(tokens) - work);
  IterationCost out;
  out.seconds = work + a2a_wait + overhead;
  out.compute_share = std::min(1.0, (lin_flops + attn_flops_pair_ * s.prefill_pairs) / flops_ / out.seconds);
  if (accel_.wait_w >= 0) {
    // Split by what the GPU does: waiting on all-reduces and the fixed overhead at wait power,
    // the rest at prefill power (prefill) or streaming power rising to it with the FLOPs' share.
    const double stream = accel_.stream_w >= 0 ? accel_.stream_w : accel_.decode_w;
    out.power_w = split_power(out.seconds, allreduce_s(tokens) + overhead + a2a_wait, accel_.wait_w,
                              (lin_flops + attn_flops_pair_ * s.prefill_pairs) / flops_, prefill ? accel_.prefill_w : stream,
                              accel_.prefill_w, cap_w_);
  } else if (prefill) {
    out.power_w = std::min(accel_.prefill_w, cap_w_);
  } else {
    // Decode draws decode power while memory-bound and more as its batch makes the tensor cores
    // work: linear between the two measured phase powers by the share of the iteration spent on
    // linear-layer FLOPs (1 = as compute-bound as a prefill). No fitted factor: docs/validation.md.
    out.power_w = std::min(accel_.decode_w + (accel_.prefill_w - accel_.decode_w) * out.compute_share, cap_w_);
  }
  return out;
}

DecodeLine PerfModel::decode_line(int n) const {
  BatchShape s;
  s.decode_seqs = n;
  DecodeLine d;
  const IterationCost base = iteration(s);
  d.fixed_s = base.seconds;
  d.per_token_s = context_tok_s_;
  d.power_w = std::min(accel_.decode_w, cap_w_);
  d.compute_s = (linear_flops_tok_ * n + lm_head_flops_ * n) / flops_;
  d.compute_bound_w = accel_.prefill_w;
  d.cap_w = cap_w_;
  if (accel_.wait_w >= 0) {
    d.wait_s = allreduce_s(n) + accel_.calib.decode_overhead_s +
               std::max(0.0, base.seconds - accel_.calib.decode_overhead_s -
                                 (std::max((linear_flops_tok_ + lm_head_flops_) * n / flops_, weights_read(n) / bytes_s_) +
                                  allreduce_s(n)));  // the all-to-all waited for
    d.wait_w = accel_.wait_w;
    d.power_w = std::min(accel_.stream_w >= 0 ? accel_.stream_w : accel_.decode_w, cap_w_);
  }
  return d;
}

double sustained_rps(const PerfModel& pm, double prompt, double output, int max_num_seqs, double step_s) {
  return sustained_rate(pm, prompt, output, max_num_seqs, step_s).rps;
}

SustainedRate sustained_rate(const PerfModel& pm, double prompt, double output, int max_num_seqs, double step_s) {
  prompt = std::max(1.0, prompt);
  output = std::max(1.0, output);
  const double ctx = prompt + output / 2;
  const int kv_fit = static_cast<int>(std::max(1.0, std::floor(pm.kv_capacity_tokens(0.9) / (prompt + output))));
  int lo = 1, hi = std::max(1, std::min(max_num_seqs, kv_fit));
  const auto step = [&](int b) {
    const DecodeLine d = pm.decode_line(b);
    return d.fixed_s + d.per_token_s * b * ctx;
  };
  while (lo < hi) {  // the largest batch whose step is within step_s (at least 1)
    const int mid = (lo + hi + 1) / 2;
    if (step(mid) <= step_s) lo = mid;
    else hi = mid - 1;
  }
  BatchShape p;
  p.prefill_tokens = prompt;
  p.prefill_pairs = prompt * (prompt + 1) / 2;
  p.prefill_seqs = 1;
  const double prefill_s = pm.iteration(p).seconds;
  const double per_request = prefill_s + output * step(lo) / lo;
  return {1 / per_request, lo, prefill_s > 0 ? prompt / prefill_s : 0};
}

IsolatedBatch predict_isolated_batch(const PerfModel& pm, int prompt, int batch, int output,
                                     KvReservation reservation, int max_model_len,
                                     double gpu_memory_utilization) {
  if (prompt < 1) core::fail_flag("prompt", "must be at least 1");
  if (batch < 1) core::fail_flag("batch", "must be at least 1");
  if (output < 1) core::fail_flag("output-tokens", "must be at least 1");
  const double capacity = pm.kv_capacity_tokens(gpu_memory_utilization);
  const double per_seq = reservation == KvReservation::kStatic
                             ? std::max<double>(max_model_len, prompt + output)
                             : double(prompt + output);
  const int fit = static_cast<int>(std::min<double>(batch, std::floor(capacity / per_seq)));
  if (fit < 1)
    core::fail_flag("prompt", fmt::format("one sequence of {} tokens needs more KV cache than the "
                                          "{:.0f} tokens available",
                                          per_seq, capacity));
  IsolatedBatch r;
  r.wave = fit;
  double total_s = 0;
  double energy = 0;
  for (int left = batch; left > 0; left -= fit) {
    const int n = std::min(left, fit);
    BatchShape p;
    p.prefill_tokens = double(n) * prompt;
    p.prefill_pairs = double(n) * prompt * (prompt + 1) / 2.0;
    p.prefill_seqs = n;
    const IterationCost pc = pm.iteration(p);
    const DecodeLine d = pm.decode_line(n);
    // Decode iterations k = 1..output-1 see context prompt + k per sequence.
    const int steps = output - 1;
    const double mean_ctx = steps > 0 ? double(n) * (prompt + (1.0 + steps) / 2.0) : 0;
    const double token_s = steps > 0 ? d.fixed_s + d.per_token_s * mean_ctx : 0;
    if (left == batch) {
      r.prompt_time_ms = pc.seconds * 1e3;
      r.token_time_ms = token_s * 1e3;
    }
    total_s += pc.seconds + steps * token_s;
    energy += (pc.seconds * pc.power_w + steps * token_s * d.power_at(token_s)) * pm.tp();
  }
  r.e2e_time_ms = total_s * 1e3;
  r.energy_j = energy;
  return r;
}

}  // namespace infergrid::model
