#pragma once
// Catalogs of accelerators and LLMs. Models are described by their architecture; parameters,
// FLOPs and KV bytes per token are derived from it, never typed in.
#include <map>
#include <string>
#include <vector>

namespace YAML {
class Node;
}

namespace infergrid::model {

// Efficiency factors of the engine performance model, fitted per accelerator by
// `infergrid calibrate` (see docs/validation.md); accelerators without measurements borrow the
// factors of the nearest measured one (`calibrated_from`).
struct Calibration {
  double compute_eff = 0.6;             // fraction of peak dense FLOP/s reached by GEMMs
  double memory_eff = 0.8;              // fraction of peak HBM bandwidth reached when streaming
  double allreduce_latency_s = 20e-6;   // per all-reduce, per log2(TP) step
  double allreduce_bw_eff = 0.3;        // fraction of interconnect bandwidth reached by all-reduce
  double decode_overhead_s = 10e-3;     // fixed cost of a decode iteration (CUDA-graph replay, CPU)
  double prefill_overhead_s = 10e-3;    // fixed cost of an iteration with prefill (eager kernels)
  double prefill_seq_overhead_s = 1e-3; // per prefilled sequence (input preparation, sampling)
};

struct Accelerator {
  std::string name;
  double dense_flops = 0;       // bf16 dense FLOP/s
  double hbm_bandwidth = 0;     // bytes/s
  double hbm_bytes = 0;         // bytes
  double interconnect_bw = 0;   // bytes/s per GPU, one direction (NVLink, or PCIe)
  // Its scale-out NIC, bytes/s one direction (a 400 Gbit/s ConnectX-7 per GPU in DGX H100/H200/
  // B200 and DeepSeek's H800 nodes): what expert parallelism across nodes sends tokens over.
  double network_bw = 50e9;
  double tdp_w = 0;             // board power limit
  double idle_w = 0;            // measured or scaled per-phase power
  double prefill_w = 0;
  double decode_w = 0;
  // An iteration's draw split by what the GPU does (docs/validation.md "Power"): while it waits
  // on all-reduces and the fixed per-iteration overhead it draws wait_w, while memory-bound
  // kernels run stream_w (towards prefill_w as the batch makes them compute-bound). wait_w < 0:
  // not measured; the phase powers (decode_w, prefill_w) cover the whole iteration.
  double wait_w = -1;
  double stream_w = -1;  // < 0: decode_w
  // The server around each accelerator (CPUs, memory, NICs, fans), drawn while it is powered.
  double host_w = 0;
  double runtime_reserve_bytes = 2e9;  // CUDA context, NCCL buffers, CUDA graphs, activations
  std::string calibrated_from;         // measured accelerator whose factors it uses
  Calibration calib;
};

struct LlmModel {
  std::string name;
  int layers = 0;
  int hidden = 0;
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int ffn = 0;           // intermediate size of a dense MLP (or of each expert)
  int vocab = 0;
  int mlp_matrices = 3;  // 3 for gated (SwiGLU) MLPs, 2 for plain GELU MLPs
  int experts = 0;       // 0: dense
  int active_experts = 0;
  int shared_experts = 0;
  int dense_layers = 0;  // MoE models: leading layers with a dense MLP of size dense_ffn
  int dense_ffn = 0;
  bool tied_embeddings = false;
  // Multi-head latent attention (DeepSeek); kv_lora_rank > 0 switches it on.
  int q_lora_rank = 0;
  int kv_lora_rank = 0;
  int qk_rope_head_dim = 0;
  int qk_nope_head_dim = 0;
  int v_head_dim = 0;
  double weight_bytes_per_param = 2;  // bf16; 1 for fp8
  double kv_bytes_per_elem = 2;

  // Derived quantities.
  double attention_params_per_layer() const;
  double mlp_params(int layer, bool active_only) const;
  double params() const;         // total, embeddings included
  double active_params() const;  // touched per token (MoE: active experts only)
  double embedding_params() const;
  double weight_bytes() const { return params() * weight_bytes_per_param; }
  // FLOPs of the linear layers per token (2 per multiply-add), lm_head excluded.
  double linear_flops_per_token() const;
  double lm_head_flops() const { return 2.0 * vocab * hidden; }
  // Attention FLOPs per (query token, context token) pair, all layers.
  double attention_flops_per_pair() const;
  double kv_bytes_per_token() const;
  // Bytes of weights read by an iteration processing `tokens` tokens (MoE: experts touched).
  double weight_bytes_read(double tokens) const;
};

class Catalog {
 public:
  static Catalog builtin();
  // Adds or overrides entries from a YAML file (see docs/catalog.md); errors name file, line, field.
  void load_yaml(const std::string& path);

  const Accelerator& accelerator(const std::string& name) const;  // InputError if unknown
  const LlmModel& llm(const std::string& name) const;
  bool has_accelerator(const std::string& name) const { return accels_.count(name) > 0; }
  std::vector<std::string> accelerator_names() const;
  std::vector<std::string> model_names() const;
  void put(const Accelerator& a) { accels_[a.name] = a; }
  void put(const LlmModel& m) { models_[m.name] = m; }

 private:
  void load_entries(const YAML::Node& root, const void* ctx);
  std::map<std::string, Accelerator> accels_;
  std::map<std::string, LlmModel> models_;
};

}  // namespace infergrid::model
