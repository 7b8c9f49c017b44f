#pragma once
// The engine performance model: time and power of one iteration of a batch that mixes prefill
// chunks and decodes, on one replica of TP accelerators. Pure functions of the batch shape.
#include <string>

#include "model/catalog.hpp"

namespace infergrid::model {

// What one iteration computes. prefill_pairs counts (query token, context token) pairs of the
// prefill chunks: a chunk of c tokens after h cached ones contributes c * (h + (c + 1) / 2).
struct BatchShape {
  double prefill_tokens = 0;
  double prefill_pairs = 0;
  int prefill_seqs = 0;
  int decode_seqs = 0;
  double decode_context = 0;  // sum of the decoding sequences' context lengths
};

struct IterationCost {
  double seconds = 0;
  double power_w = 0;  // per accelerator, while this iteration runs
  // The share of the iteration its FLOPs take at the (capped) compute rate: 1 = compute-bound
  // throughout (a large prefill), near 0 for a small memory-bound decode. Summed over time, the
  // GPU's compute utilization (docs/planet.md "Utilization").
  double compute_share = 0;
};

// An iteration's draw split by time (docs/validation.md "Power"): wait_s of it (all-reduces, fixed
// overhead) at wait_w, the rest from lo_w towards hi_w by the share of it the FLOPs take
// (compute_s at the capped compute rate); never above cap_w.
inline double split_power(double iteration_s, double wait_s, double wait_w, double compute_s, double lo_w, double hi_w,
                          double cap_w) {
  const double wait = wait_s < iteration_s ? wait_s : iteration_s;
  const double active = iteration_s - wait;
  const double share = active <= 0 ? 0 : compute_s >= active ? 1.0 : compute_s / active;
  const double p = (active * (lo_w + (hi_w - lo_w) * share) + wait * wait_w) / iteration_s;
  return p < cap_w ? p : cap_w;
}

// A pure-decode iteration of n sequences with total context S takes fixed_s + per_token_s * S:
// the replica uses this line to advance many decode iterations in closed form.
// Its power rises with the share of the iteration the tensor cores are busy (compute_s of an
// iteration of iteration_s): from decode power (memory-bound) toward prefill power.
struct DecodeLine {
  double fixed_s = 0;
  double per_token_s = 0;
  double power_w = 0;        // at compute_s = 0, or always when compute_s is 0
  double compute_s = 0;      // linear-layer FLOPs at the (capped) compute rate, per iteration
  double compute_bound_w = 0;
  double cap_w = 0;
  // Where the accelerator's wait power is known: seconds of each iteration spent waiting (all-
  // reduces, fixed overhead), drawing wait_w; the rest draws power_w .. compute_bound_w.
  double wait_s = 0, wait_w = -1;
  double compute_share_at(double iteration_s) const {
    if (compute_s <= 0 || iteration_s <= 0) return 0;
    return compute_s >= iteration_s ? 1.0 : compute_s / iteration_s;
  }
  double power_at(double iteration_s) const {
    if (iteration_s <= 0) return power_w;
    if (wait_w >= 0) return split_power(iteration_s, wait_s, wait_w, compute_s, power_w, compute_bound_w, cap_w);
    if (compute_s <= 0) return power_w;
    const double p = power_w + (compute_bound_w - power_w) * compute_share_at(iteration_s);
    return p < cap_w ? p : cap_w;
  }
};

// The narrow interface the replica scheduler needs; tests substitute simple service laws.
class StepModel {
 public:
  virtual ~StepModel() = default;
  virtual IterationCost iteration(const BatchShape& shape) const = 0;
  virtual DecodeLine decode_line(int n) const = 0;
  virtual double idle_power_w() const = 0;
  virtual int accelerators() const = 0;
};

class PerfModel final : public StepModel {
 public:
  // power_cap: fraction of board power (1 = uncapped). Throws InputError if the weights do
  // not fit at this tensor-parallel degree.
  // ep > 1 (MoE models): expert parallelism over ep accelerators with data-parallel attention,
  // as DeepSeek and SGLang serve DeepSeek-V3 (docs/validation.md "Expert parallelism"): the
  // routed experts are spread over the ep GPUs, the attention, dense layers, shared experts and
  // embeddings are held by each of the ep / tp attention groups (tp-way), each group holds its
  // own sequences' KV, and every MoE layer dispatches each token to its experts and combines the
  // answers (all-to-all over NVLink within a node, the NIC across nodes), overlapped with the
  // computation of the other micro-batch.
  PerfModel(const LlmModel& m, const Accelerator& a, int tp, double power_cap = 1.0, int ep = 1);

  IterationCost iteration(const BatchShape& shape) const override;
  DecodeLine decode_line(int n) const override;
  double idle_power_w() const override { return accel_.idle_w; }
  int accelerators() const override { return gpus_; }

  // KV cache capacity in tokens at the given memory utilization (vLLM's rule: utilization x
  // memory, minus weights, minus the runtime reserve, per accelerator).
  double kv_capacity_tokens(double gpu_memory_utilization) const;
  double kv_bytes_per_token_per_gpu() const;
  const LlmModel& llm() const { return model_; }
  const Accelerator& accel() const { return accel_; }
  int tp() const { return tp_; }
  int ep() const { return ep_; }
  // Seconds of one MoE all-to-all round (dispatch and combine, every MoE layer) for `tokens`
  // tokens over the replica; 0 without expert parallelism.
  double all_to_all_s(double tokens) const;
  // Clock fractions under the power cap for compute-bound and memory-bound work.
  double compute_clock() const { return clock_compute_; }
  double memory_clock() const { return clock_memory_; }

 private:
  double allreduce_s(double tokens) const;
  double weights_read(double tokens) const;
  LlmModel model_;
  Accelerator accel_;
  int tp_;
  int ep_ = 1, dp_ = 1, gpus_ = 1;  // expert parallelism: ep GPUs, dp = ep / tp attention groups
  double held_weight_bytes_per_gpu_ = 0;
  double cap_w_;
  double clock_compute_ = 1, clock_memory_ = 1;
  double flops_, bytes_s_;  // effective replica-wide FLOP/s and bytes/s, cap included
  // Derived model figures, computed once: the iteration cost sits on the simulator's hot path.
  double linear_flops_tok_, lm_head_flops_, attn_flops_pair_, kv_bytes_tok_, dense_weight_bytes_;
  double context_tok_s_ = 0;  // seconds per context token a decode attends over (KV read or FLOPs)
};

// Requests per second one replica sustains for a mix of mean prompt and output lengths: each
// request costs a prefill of its prompt plus its output decoded in a batch of B, where B is the
// largest batch (at most max_num_seqs, within the KV cache) whose decode step stays within
// step_s. What a capacity planner reads off the engine model (docs/control.md "infergrid").
double sustained_rps(const PerfModel& pm, double prompt_tokens, double output_tokens, int max_num_seqs,
                     double step_s = 0.05);
// The same, with what it rests on: B (the batch within step_s) and the prefill speed of the mean
// prompt in tokens per second (what a router needs for a request's expected TTFT).
struct SustainedRate {
  double rps = 0;
  int batch = 1;
  double prefill_tok_s = 0;
};
SustainedRate sustained_rate(const PerfModel& pm, double prompt_tokens, double output_tokens, int max_num_seqs,
                             double step_s = 0.05);

// The prediction `infergrid perf` prints: an isolated batch of `batch` prompts of `prompt`
// tokens that then decode to `output` tokens each.
struct IsolatedBatch {
  double prompt_time_ms = 0;  // the prefill iteration of the first wave
  double token_time_ms = 0;   // mean decode iteration of the first wave
  double e2e_time_ms = 0;     // until the last sequence finishes
  int wave = 0;               // sequences that fit in KV at once
  double energy_j = 0;
};

enum class KvReservation { kPaged, kStatic };  // paged: prompt+output; static: max_model_len

IsolatedBatch predict_isolated_batch(const PerfModel& pm, int prompt, int batch, int output,
                                     KvReservation reservation = KvReservation::kPaged,
                                     int max_model_len = 0, double gpu_memory_utilization = 0.9);

}  // namespace infergrid::model
