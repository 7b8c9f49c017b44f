#include "model/catalog.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fmt/format.h>

#include "core/error.hpp"
#include "core/units.hpp"

namespace infergrid::model {

using core::fail_input;

double LlmModel::attention_params_per_layer() const {
  const double h = hidden;
  if (kv_lora_rank > 0) {  // MLA: low-rank query and joint key-value compression
    const double qk = qk_nope_head_dim + qk_rope_head_dim;
    const double q = q_lora_rank > 0 ? h * q_lora_rank + double(q_lora_rank) * heads * qk
                                     : h * heads * qk;
    const double kv = h * (kv_lora_rank + qk_rope_head_dim) +
                      double(kv_lora_rank) * heads * (qk_nope_head_dim + v_head_dim);
    const double o = double(heads) * v_head_dim * h;
    return q + kv + o;
  }
  const double q = h * heads * head_dim;
  const double kv = 2.0 * h * kv_heads * head_dim;
  const double o = double(heads) * head_dim * h;
  return q + kv + o;
}

double LlmModel::mlp_params(int layer, bool active_only) const {
  const double dense = double(mlp_matrices) * hidden;
  if (experts == 0) return dense * ffn;
  if (layer < dense_layers) return dense * dense_ffn;
  const int n = (active_only ? active_experts : experts) + shared_experts;
  const double router = double(hidden) * experts;
  return dense * ffn * n + router;
}

double LlmModel::embedding_params() const {
  return double(vocab) * hidden * (tied_embeddings ? 1 : 2);
}

double LlmModel::params() const {
  double p = embedding_params();
  for (int l = 0; l < layers; ++l) p += attention_params_per_layer() + mlp_params(l, false);
  return p;
}

double LlmModel::active_params() const {
  double p = embedding_params();
  for (int l = 0; l < layers; ++l) p += attention_params_per_layer() + mlp_params(l, true);
  return p;
}

double LlmModel::linear_flops_per_token() const {
  return 2.0 * (active_params() - embedding_params());
}

double LlmModel::attention_flops_per_pair() const {
  // QK^T and AV: two multiply-adds per head dimension per pair.
  if (kv_lora_rank > 0)  // absorbed MLA attends over the compressed latent (+ rope part)
    return 2.0 * layers * heads * (2.0 * kv_lora_rank + qk_rope_head_dim);
  return 4.0 * layers * heads * head_dim;
}

double LlmModel::kv_bytes_per_token() const {
  if (kv_lora_rank > 0) return double(layers) * (kv_lora_rank + qk_rope_head_dim) * kv_bytes_per_elem;
  return 2.0 * layers * kv_heads * head_dim * kv_bytes_per_elem;
}

double LlmModel::weight_bytes_read(double tokens) const {
  if (experts == 0) return weight_bytes();
  // Each token routes to active_experts of experts; expected distinct experts touched.
  const double p_untouched = std::pow(1.0 - double(active_experts) / experts, tokens);
  const double touched = experts * (1.0 - p_untouched);
  double bytes = embedding_params();
  for (int l = 0; l < layers; ++l) {
    bytes += attention_params_per_layer();
    if (l < dense_layers) {
      bytes += mlp_params(l, false);
    } else {
      bytes += double(mlp_matrices) * hidden * ffn * (touched + shared_experts);
    }
  }
  return bytes * weight_bytes_per_param;
}

namespace {

// Factors fitted by `infergrid calibrate` against data/perf/splitwise_measured_llama2-70b.csv;
// docs/validation.md shows the fit and its error per group.
const Calibration kA100Calibration{.compute_eff = 0.6891,
                                   .memory_eff = 0.9877,
                                   .allreduce_latency_s = 43.01e-6,
                                   .allreduce_bw_eff = 0.4467,
                                   .decode_overhead_s = 15.499e-3,
                                   .prefill_overhead_s = 0.0,
                                   .prefill_seq_overhead_s = 16.438e-3};
const Calibration kH100Calibration{.compute_eff = 0.5306,
                                   .memory_eff = 0.6955,
                                   .allreduce_latency_s = 47.49e-6,
                                   .allreduce_bw_eff = 0.4183,
                                   .decode_overhead_s = 0.0,
                                   .prefill_overhead_s = 0.0,
                                   .prefill_seq_overhead_s = 1.808e-3};

// Power per phase: A100 and H100 are measured (data/energy/splitwise_power_model_constant.yaml);
// others scale the measured ratios of their generation to their own board power.
Accelerator make_accel(std::string name, double tflops, double tbps, double mem_bytes,
                       double link_gbps, double tdp, const Accelerator* like) {
  Accelerator a;
  a.name = std::move(name);
  a.dense_flops = tflops * 1e12;
  a.hbm_bandwidth = tbps * 1e12;
  a.hbm_bytes = mem_bytes;
  a.interconnect_bw = link_gbps * 1e9;
  a.tdp_w = tdp;
  if (like) {
    a.idle_w = like->idle_w / like->tdp_w * tdp;
    a.prefill_w = like->prefill_w / like->tdp_w * tdp;
    a.decode_w = like->decode_w / like->tdp_w * tdp;
    if (like->wait_w >= 0) a.wait_w = like->wait_w / like->tdp_w * tdp;
    if (like->stream_w >= 0) a.stream_w = like->stream_w / like->tdp_w * tdp;
    a.host_w = like->host_w / like->tdp_w * tdp;
    a.calib = like->calib;
    a.calibrated_from = like->name;
  }
  return a;
}

}  // namespace

Catalog Catalog::builtin() {
  Catalog c;
  // Datasheet figures: dense bf16 FLOP/s, HBM bandwidth and size, per-GPU one-way NVLink
  // (PCIe Gen4 x16 for the Ada cards), board power.
  Accelerator a100 = make_accel("a100-80gb", 312, 2.039, 80 * core::kGiB, 300, 400, nullptr);
  a100.idle_w = 63;
  a100.prefill_w = 400;
  a100.decode_w = 250;
  // Fitted to the Splitwise A100 runs' average power at TP 2 and 8, TP 4 held out (docs/validation.md
  // "Power"): streaming kernels draw the board power while they run, waits on all-reduces and the
  // per-iteration overhead 120 W (1.9 x idle); the phase average falls with TP as waits grow.
  a100.wait_w = 120;
  a100.stream_w = 400;
  // Host share per accelerator (docs/validation.md "Host power"): a measured 8 x H100 HGX node
  // peaked at 8.4 kW, >= 2.8 kW above its GPUs' 5.6 kW (350 W/GPU); DGX nameplates bound it at
  // 575 (H100) and 412 (A100) W/GPU; A100 scaled by the ratio of those bounds.
  a100.host_w = 250;
  a100.calib = kA100Calibration;
  a100.calibrated_from = "a100-80gb";
  Accelerator h100 = make_accel("h100-80gb", 989, 3.35, 80 * core::kGiB, 450, 700, nullptr);
  h100.idle_w = 75;
  h100.prefill_w = 700;
  h100.decode_w = 380;
  h100.host_w = 350;
  h100.calib = kH100Calibration;
  h100.calibrated_from = "h100-80gb";
  c.put(a100);
  c.put(h100);
  c.put(make_accel("h200", 989, 4.8, 141e9, 450, 700, &h100));
  // The export H100 that DeepSeek serves on: H100 SXM compute and HBM3, NVLink cut to 400 GB/s
  // (200 each way); 8 x 400 Gbit/s InfiniBand per node (DeepSeek-V3 technical report, 3.1).
  c.put(make_accel("h800", 989, 3.35, 80 * core::kGiB, 200, 700, &h100));
  c.put(make_accel("b200", 2250, 8.0, 180e9, 900, 1000, &h100));
  c.put(make_accel("l40s", 362, 0.864, 48e9, 32, 350, &a100));
  c.put(make_accel("l4", 121, 0.3, 24e9, 32, 72, &a100));

  auto llama = [](std::string name, int layers, int hidden, int heads, int kv, int ffn, int vocab) {
    LlmModel m;
    m.name = std::move(name);
    m.layers = layers;
    m.hidden = hidden;
    m.heads = heads;
    m.kv_heads = kv;
    m.head_dim = hidden / heads;
    m.ffn = ffn;
    m.vocab = vocab;
    return m;
  };
  c.put(llama("llama2-7b", 32, 4096, 32, 32, 11008, 32000));
  c.put(llama("llama2-70b", 80, 8192, 64, 8, 28672, 32000));
  c.put(llama("llama3-8b", 32, 4096, 32, 8, 14336, 128256));
  c.put(llama("llama3-70b", 80, 8192, 64, 8, 28672, 128256));
  c.put(llama("llama3.1-405b", 126, 16384, 128, 8, 53248, 128256));
  c.put(llama("qwen2.5-72b", 80, 8192, 64, 8, 29568, 152064));
  LlmModel mixtral = llama("mixtral-8x7b", 32, 4096, 32, 8, 14336, 32000);
  mixtral.experts = 8;
  mixtral.active_experts = 2;
  c.put(mixtral);
  LlmModel bloom = llama("bloom-176b", 70, 14336, 112, 112, 4 * 14336, 250880);
  bloom.mlp_matrices = 2;
  bloom.tied_embeddings = true;
  c.put(bloom);
  LlmModel ds = llama("deepseek-v3", 61, 7168, 128, 128, 2048, 129280);
  ds.experts = 256;
  ds.active_experts = 8;
  ds.shared_experts = 1;
  ds.dense_layers = 3;
  ds.dense_ffn = 18432;
  ds.q_lora_rank = 1536;
  ds.kv_lora_rank = 512;
  ds.qk_rope_head_dim = 64;
  ds.qk_nope_head_dim = 128;
  ds.v_head_dim = 128;
  ds.weight_bytes_per_param = 1;  // released in fp8
  c.put(ds);
  return c;
}

const Accelerator& Catalog::accelerator(const std::string& name) const {
  auto it = accels_.find(name);
  if (it == accels_.end())
    core::fail_flag("gpu", fmt::format("unknown accelerator '{}' (known: {})", name,
                                       fmt::join(accelerator_names(), ", ")));
  return it->second;
}

const LlmModel& Catalog::llm(const std::string& name) const {
  auto it = models_.find(name);
  if (it == models_.end())
    core::fail_flag("model", fmt::format("unknown model '{}' (known: {})", name,
                                         fmt::join(model_names(), ", ")));
  return it->second;
}

std::vector<std::string> Catalog::accelerator_names() const {
  std::vector<std::string> v;
  for (auto& [k, _] : accels_) v.push_back(k);
  return v;
}
std::vector<std::string> Catalog::model_names() const {
  std::vector<std::string> v;
  for (auto& [k, _] : models_) v.push_back(k);
  return v;
}

namespace {

struct YamlCtx {
  const std::string& file;
};

double get_num(const YamlCtx& ctx, const YAML::Node& n, const std::string& key, double dflt,
               bool required, double min_value = 0) {
  const YAML::Node v = n[key];
  if (!v) {
    if (required) fail_input(ctx.file, n.Mark().line + 1, key, "missing");
    return dflt;
  }
  double d = 0;
  try {
    d = v.as<double>();
  } catch (const YAML::Exception&) {
    fail_input(ctx.file, v.Mark().line + 1, key, "expected a number");
  }
  if (!(d >= min_value) || !std::isfinite(d))
    fail_input(ctx.file, v.Mark().line + 1, key, fmt::format("must be a finite number of at least {}", min_value));
  return d;
}

int get_int(const YamlCtx& ctx, const YAML::Node& n, const std::string& key, int dflt,
            bool required, int min_value = 0) {
  const double d = get_num(ctx, n, key, dflt, required, min_value);
  if (d > 1e8 || d != std::floor(d))
    fail_input(ctx.file, n[key].Mark().line + 1, key, "expected an integer up to 100000000");
  return static_cast<int>(d);
}

std::string get_name(const YamlCtx& ctx, const YAML::Node& n) {
  const YAML::Node v = n["name"];
  if (!v || !v.IsScalar() || v.Scalar().empty())
    fail_input(ctx.file, n.Mark().line + 1, "name", "missing");
  return v.Scalar();
}

}  // namespace

void Catalog::load_yaml(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    fail_input(path, 0, "", "cannot open file");
  } catch (const YAML::Exception& e) {
    fail_input(path, e.mark.line + 1, "", e.msg);
  }
  const YamlCtx ctx{path};
  if (!root.IsMap()) fail_input(path, 1, "", "expected a mapping with 'accelerators' and/or 'models'");
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (key != "accelerators" && key != "models")
      fail_input(path, it->first.Mark().line + 1, key, "unknown key (expected accelerators, models)");
    if (!it->second.IsSequence()) fail_input(path, it->second.Mark().line + 1, key, "expected a list");
  }
  try {
    load_entries(root, &ctx);
  } catch (const YAML::Exception& e) {
    fail_input(path, e.mark.line + 1, "", e.msg);
  }
}

void Catalog::load_entries(const YAML::Node& root, const void* ctx_ptr) {
  const YamlCtx& ctx = *static_cast<const YamlCtx*>(ctx_ptr);
  const std::string& path = ctx.file;
  auto need_map = [&](const YAML::Node& n) {
    if (!n.IsMap()) fail_input(path, n.Mark().line + 1, "", "expected a mapping with a name");
  };
  for (const auto& n : root["accelerators"]) {
    need_map(n);
    const std::string name = get_name(ctx, n);
    const Accelerator* like = nullptr;
    if (n["calibrated_from"]) {
      const std::string from = n["calibrated_from"].Scalar();
      auto it = accels_.find(from);
      if (it == accels_.end())
        fail_input(path, n["calibrated_from"].Mark().line + 1, "calibrated_from",
                   fmt::format("unknown accelerator '{}'", from));
      like = &it->second;
    } else {
      like = &accels_.at("h100-80gb");
    }
    Accelerator a = make_accel(name, get_num(ctx, n, "dense_tflops", 0, true, 1e-6),
                               get_num(ctx, n, "hbm_tbps", 0, true, 1e-6),
                               get_num(ctx, n, "hbm_gb", 0, true, 1e-6) * 1e9,
                               get_num(ctx, n, "interconnect_gbps", 32, false, 1e-6),
                               get_num(ctx, n, "tdp_w", 0, true, 1e-6), like);
    a.idle_w = get_num(ctx, n, "idle_w", a.idle_w, false);
    a.prefill_w = get_num(ctx, n, "prefill_w", a.prefill_w, false);
    a.decode_w = get_num(ctx, n, "decode_w", a.decode_w, false);
    if (n["wait_w"] || n["stream_w"]) {
      a.wait_w = get_num(ctx, n, "wait_w", a.idle_w, false);
      a.stream_w = get_num(ctx, n, "stream_w", a.decode_w, false);
    }
    a.host_w = get_num(ctx, n, "host_w", a.host_w, false);
    a.runtime_reserve_bytes = get_num(ctx, n, "runtime_reserve_gb", 2, false) * 1e9;
    put(a);
  }
  for (const auto& n : root["models"]) {
    need_map(n);
    LlmModel m;
    m.name = get_name(ctx, n);
    m.layers = get_int(ctx, n, "layers", 0, true, 1);
    m.hidden = get_int(ctx, n, "hidden", 0, true, 1);
    m.heads = get_int(ctx, n, "heads", 0, true, 1);
    m.kv_heads = get_int(ctx, n, "kv_heads", m.heads, false, 1);
    m.head_dim = get_int(ctx, n, "head_dim", m.hidden / m.heads, false, 1);
    m.ffn = get_int(ctx, n, "ffn", 0, true, 1);
    m.vocab = get_int(ctx, n, "vocab", 0, true, 1);
    m.mlp_matrices = get_int(ctx, n, "mlp_matrices", 3, false, 2);
    m.experts = get_int(ctx, n, "experts", 0, false);
    m.active_experts = get_int(ctx, n, "active_experts", m.experts ? 2 : 0, false);
    m.shared_experts = get_int(ctx, n, "shared_experts", 0, false);
    m.dense_layers = get_int(ctx, n, "dense_layers", 0, false);
    m.dense_ffn = get_int(ctx, n, "dense_ffn", m.ffn, false);
    m.tied_embeddings = n["tied_embeddings"] && n["tied_embeddings"].as<bool>(false);
    m.q_lora_rank = get_int(ctx, n, "q_lora_rank", 0, false);
    m.kv_lora_rank = get_int(ctx, n, "kv_lora_rank", 0, false);
    m.qk_rope_head_dim = get_int(ctx, n, "qk_rope_head_dim", 0, false);
    m.qk_nope_head_dim = get_int(ctx, n, "qk_nope_head_dim", 0, false);
    m.v_head_dim = get_int(ctx, n, "v_head_dim", 0, false);
    m.weight_bytes_per_param = get_num(ctx, n, "weight_bytes_per_param", 2, false, 0.125);
    m.kv_bytes_per_elem = get_num(ctx, n, "kv_bytes_per_elem", 2, false, 0.125);
    if (m.experts > 0 && (m.active_experts < 1 || m.active_experts > m.experts))
      fail_input(path, n.Mark().line + 1, "active_experts", "must be between 1 and experts");
    if (m.kv_heads > m.heads) fail_input(path, n["kv_heads"].Mark().line + 1, "kv_heads", "exceeds heads");
    put(m);
  }
}

}  // namespace infergrid::model
