// The `infergrid` command: sim, perf, calibrate, catalog.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "core/csv.hpp"
#include "core/error.hpp"
#include "core/paths.hpp"
#include "model/calibrate.hpp"
#include "model/catalog.hpp"
#include "model/perf_model.hpp"
#include "sim/site_sim.hpp"
#include "sim/summary.hpp"
#include "workload/generator.hpp"
#include "workload/trace.hpp"

namespace ig = infergrid;

namespace {

struct Common {
  std::string model = "llama2-70b", gpu = "h100-80gb", catalog_file;
  int tp = 8;
  double power_cap = 1.0;
  void add(CLI::App* app) {
    app->add_option("--model", model, "model name (see `infergrid catalog`)");
    app->add_option("--gpu", gpu, "accelerator name");
    app->add_option("--tp", tp, "tensor-parallel degree");
    app->add_option("--power-cap", power_cap, "power cap as a fraction of board power (0, 1]");
    app->add_option("--catalog", catalog_file, "YAML file adding or overriding catalog entries");
  }
  ig::model::Catalog catalog() const {
    auto c = ig::model::Catalog::builtin();
    if (!catalog_file.empty()) c.load_yaml(catalog_file);
    return c;
  }
};

class Progress {
 public:
  explicit Progress(bool on) : on_(on && isatty(STDERR_FILENO)) {}
  void operator()(double f) {
    if (!on_ || f < 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (f < 1 && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    const int w = 40, n = static_cast<int>(f * w);
    std::fprintf(stderr, "\r[%s%s] %3.0f%%", std::string(n, '#').c_str(),
                 std::string(w - n, '.').c_str(), 100 * f);
    if (f >= 1) std::fprintf(stderr, "\n");
  }

 private:
  bool on_;
  std::chrono::steady_clock::time_point last_{};
};

int cmd_sim(const Common& common, const std::map<std::string, std::string>& s,
            const ig::sim::SiteConfig& site_in, const ig::workload::GeneratorSpec& gen,
            bool use_generator, bool requests_csv, bool progress_on) {
  const auto catalog = common.catalog();
  auto pm = std::make_shared<ig::model::PerfModel>(catalog.llm(common.model),
                                                  catalog.accelerator(common.gpu), common.tp,
                                                  common.power_cap);
  ig::sim::SiteConfig site = site_in;
  std::int64_t kv = site.engine.kv_capacity_tokens > 0
                        ? site.engine.kv_capacity_tokens
                        : static_cast<std::int64_t>(pm->kv_capacity_tokens(site.engine.gpu_memory_utilization));
  if (kv < site.engine.block_size)
    ig::core::fail_flag("gpu-memory-utilization", "leaves no room for the KV cache");
  std::unique_ptr<ig::workload::RequestSource> source;
  std::string trace_desc;
  if (use_generator) {
    source = ig::workload::make_generator(gen);
    trace_desc = "generated";
  } else {
    const std::string& path = s.at("trace");
    const auto fmt = s.at("trace_format").empty() ? ig::workload::detect_trace_format(path)
                                                  : ig::workload::parse_trace_format(s.at("trace_format"));
    source = ig::workload::open_trace(path, fmt);
    trace_desc = std::filesystem::path(path).filename().string();
  }
  const std::string out = s.at("out");
  std::filesystem::create_directories(out);
  ig::sim::Metrics metrics({std::stod(s.at("slo_ttft")), std::stod(s.at("slo_tpot"))});
  if (requests_csv) metrics.open_requests_csv(out + "/requests.csv");
  ig::sim::SiteSim sim(pm, kv, site);
  Progress bar(progress_on);
  const auto t0 = std::chrono::steady_clock::now();
  const auto res = sim.run(*source, metrics, [&](double f) { bar(f); });
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  metrics.close();
  ig::sim::RunInfo info;
  info.prefix_caching = site.engine.enable_prefix_caching;
  info.config = {{"trace", trace_desc},
                 {"model", common.model},
                 {"gpu", common.gpu},
                 {"tp", std::to_string(common.tp)},
                 {"replicas", std::to_string(site.replicas)},
                 {"router", site.router},
                 {"seed", std::to_string(site.seed)},
                 {"power_cap", fmt::format("{}", common.power_cap)},
                 {"max_num_seqs", std::to_string(site.engine.max_num_seqs)},
                 {"max_num_batched_tokens", std::to_string(site.engine.max_num_batched_tokens)},
                 {"block_size", std::to_string(site.engine.block_size)},
                 {"kv_capacity_tokens", std::to_string(kv)}};
  std::ofstream(out + "/summary.json") << ig::sim::summary_json(info, res, metrics);
  std::cout << ig::sim::summary_text(res, metrics);
  std::cout << fmt::format("simulated {} requests in {:.2f} s of wall time ({:.0f} requests/s); "
                           "wrote {}/summary.json{}\n",
                           res.arrived, wall, res.arrived / std::max(wall, 1e-9), out,
                           requests_csv ? fmt::format(" and {}/requests.csv", out) : "");
  return 0;
}

int cmd_perf(const Common& common, int prompt, int batch, int output, const std::string& reservation,
             int max_model_len, double util) {
  const auto catalog = common.catalog();
  const ig::model::PerfModel pm(catalog.llm(common.model), catalog.accelerator(common.gpu),
                                common.tp, common.power_cap);
  ig::model::KvReservation r = ig::model::KvReservation::kPaged;
  if (reservation == "static") r = ig::model::KvReservation::kStatic;
  else if (reservation != "paged") ig::core::fail_flag("kv-reservation", "must be paged or static");
  const auto p = ig::model::predict_isolated_batch(pm, prompt, batch, output, r, max_model_len, util);
  nlohmann::ordered_json j;
  j["model"] = common.model;
  j["gpu"] = common.gpu;
  j["tp"] = common.tp;
  j["prompt"] = prompt;
  j["batch"] = batch;
  j["output_tokens"] = output;
  j["power_cap"] = common.power_cap;
  j["prompt_time_ms"] = p.prompt_time_ms;
  j["token_time_ms"] = p.token_time_ms;
  j["e2e_time_ms"] = p.e2e_time_ms;
  j["concurrent_sequences"] = p.wave;
  j["energy_j"] = p.energy_j;
  j["kv_capacity_tokens"] = pm.kv_capacity_tokens(util);
  std::cout << j.dump(2) << "\n";
  return 0;
}

int cmd_calibrate(const Common& common, const std::string& data, bool fit, const std::string& md) {
  auto catalog = common.catalog();
  const auto groups = ig::model::load_measurements(data);
  if (fit) {
    std::set<std::string> gpus;
    for (const auto& g : groups) gpus.insert(g.gpu);
    for (const auto& gpu : gpus) {
      const auto c = ig::model::fit_calibration(catalog, gpu, groups);
      fmt::print("{}: compute_eff {:.4f}  memory_eff {:.4f}  allreduce_latency_us {:.2f}  "
                 "allreduce_bw_eff {:.4f}  decode_overhead_ms {:.3f}  prefill_overhead_ms {:.3f}  "
                 "prefill_seq_overhead_ms {:.3f}\n",
                 gpu, c.compute_eff, c.memory_eff, c.allreduce_latency_s * 1e6, c.allreduce_bw_eff,
                 c.decode_overhead_s * 1e3, c.prefill_overhead_s * 1e3,
                 c.prefill_seq_overhead_s * 1e3);
      auto a = catalog.accelerator(gpu);
      a.calib = c;
      catalog.put(a);
    }
  }
  const auto v = ig::model::validate(catalog, groups);
  const std::string table = ig::model::validation_markdown(v);
  if (!md.empty()) std::ofstream(md) << table;
  std::cout << table;
  fmt::print("MAPE over {} isolated groups: prompt_time {:.2f}%  token_time {:.2f}%{}\n", v.counted,
             100 * v.mape_prompt, 100 * v.mape_token, fit ? " (re-fitted factors)" : " (built-in factors)");
  return 0;
}

int cmd_catalog(const Common& common) {
  const auto c = common.catalog();
  fmt::print("{:<14} {:>9} {:>8} {:>8} {:>9} {:>7} {:>7} {:>7} {:>7}  {}\n", "accelerator", "TFLOP/s",
             "HBM TB/s", "HBM GB", "link GB/s", "TDP W", "idle W", "pref W", "dec W", "factors from");
  for (const auto& n : c.accelerator_names()) {
    const auto& a = c.accelerator(n);
    fmt::print("{:<14} {:>9.0f} {:>8.2f} {:>8.1f} {:>9.0f} {:>7.0f} {:>7.0f} {:>7.0f} {:>7.0f}  {}\n", n,
               a.dense_flops / 1e12, a.hbm_bandwidth / 1e12, a.hbm_bytes / 1e9,
               a.interconnect_bw / 1e9, a.tdp_w, a.idle_w, a.prefill_w, a.decode_w, a.calibrated_from);
  }
  fmt::print("\n{:<14} {:>10} {:>10} {:>14} {:>14} {:>10}\n", "model", "params B", "active B",
             "GFLOP/token", "KV KiB/token", "weights GB");
  for (const auto& n : c.model_names()) {
    const auto& m = c.llm(n);
    fmt::print("{:<14} {:>10.2f} {:>10.2f} {:>14.2f} {:>14.1f} {:>10.1f}\n", n, m.params() / 1e9,
               m.active_params() / 1e9, (m.linear_flops_per_token() + m.lm_head_flops()) / 1e9,
               m.kv_bytes_per_token() / 1024, m.weight_bytes() / 1e9);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"infergrid: plan and run an AI-first inference cloud"};
  app.require_subcommand(1);
  Common common;

  auto* sim = app.add_subcommand("sim", "simulate one site replaying a trace or a generated workload");
  common.add(sim);
  std::map<std::string, std::string> s{{"trace", ig::core::data_dir() + "/traces/AzureLLMInferenceTrace_conv.csv"},
                                       {"trace_format", ""}, {"out", "out"},
                                       {"slo_ttft", "0"}, {"slo_tpot", "0"}};
  ig::sim::SiteConfig site;
  site.replicas = 8;
  ig::workload::GeneratorSpec gen;
  std::uint64_t generate = 0;
  std::string prompt_dist = "lognormal:1000:1", output_dist = "lognormal:250:1", schedule;
  std::string prefix_tokens = "0", policy = "fcfs";
  bool no_csv = false, no_progress = false;
  sim->add_option("--trace", s["trace"], "trace file (default: the embedded Azure conversation trace)");
  sim->add_option("--trace-format", s["trace_format"], "azure | azure-mm | burstgpt | mooncake (default: from the header)");
  sim->add_option("--replicas", site.replicas, "model-server replicas");
  sim->add_option("--router", site.router, "round-robin | least-outstanding | power-of-two | central-queue");
  sim->add_option("--slo-ttft-ms", s["slo_ttft"], "TTFT bound of the SLO (0: none)");
  sim->add_option("--slo-tpot-ms", s["slo_tpot"], "TPOT bound of the SLO (0: none)");
  sim->add_option("--seed", site.seed, "seed of every random stream");
  sim->add_option("--out", s["out"], "output folder");
  sim->add_option("--max-num-seqs", site.engine.max_num_seqs, "vLLM --max-num-seqs");
  sim->add_option("--max-num-batched-tokens", site.engine.max_num_batched_tokens, "vLLM --max-num-batched-tokens");
  sim->add_option("--block-size", site.engine.block_size, "vLLM --block-size (tokens per KV block)");
  sim->add_option("--gpu-memory-utilization", site.engine.gpu_memory_utilization, "vLLM --gpu-memory-utilization");
  sim->add_flag("--enable-prefix-caching", site.engine.enable_prefix_caching, "vLLM --enable-prefix-caching");
  sim->add_option("--prefix-cache-tokens", prefix_tokens, "prefix-cache capacity: N tokens or 'unlimited' (default: the KV cache)");
  sim->add_option("--scheduling-policy", policy, "fcfs | priority");
  sim->add_option("--kv-capacity-tokens", site.engine.kv_capacity_tokens, "override the derived KV capacity per replica");
  sim->add_option("--generate", generate, "generate N requests instead of reading a trace");
  sim->add_option("--rate", gen.rate, "generated arrival rate, requests/s");
  sim->add_option("--cv", gen.cv, "coefficient of variation of inter-arrival times (1: Poisson; else Gamma)");
  sim->add_option("--rate-schedule", schedule, "piecewise rate SECONDS:RATE,... (overrides --rate)");
  sim->add_option("--prompt-dist", prompt_dist, "prompt tokens: fixed:N | uniform:A:B | lognormal:MEAN:CV | exponential:MEAN");
  sim->add_option("--output-dist", output_dist, "output tokens, same forms");
  sim->add_flag("--no-requests-csv", no_csv, "skip DIR/requests.csv");
  sim->add_flag("--no-progress", no_progress, "no progress bar");
  bool step_by_step = false;
  sim->add_flag("--step-by-step", step_by_step, "one event per decode iteration (the baseline the closed form is measured against)");

  auto* perf = app.add_subcommand("perf", "predict an isolated batch: prompt, token and e2e time");
  common.add(perf);
  int prompt = 512, batch = 1, output = 128, max_model_len = 0;
  double util = 0.9;
  std::string reservation = "paged";
  perf->add_option("--prompt", prompt, "prompt tokens per sequence");
  perf->add_option("--batch", batch, "sequences");
  perf->add_option("--output-tokens", output, "output tokens per sequence");
  perf->add_option("--kv-reservation", reservation, "paged (vLLM) | static (max-model-len per sequence)");
  perf->add_option("--max-model-len", max_model_len, "tokens reserved per sequence when static");
  perf->add_option("--gpu-memory-utilization", util, "fraction of memory for weights + KV");

  auto* cal = app.add_subcommand("calibrate", "hold the model against measurements; --fit re-fits its factors");
  common.add(cal);
  std::string data = ig::core::data_dir() + "/perf/splitwise_measured_llama2-70b.csv", md;
  bool fit = false;
  cal->add_option("--data", data, "measurement CSV (Splitwise format)");
  cal->add_flag("--fit", fit, "re-fit the efficiency factors and print them");
  cal->add_option("--markdown", md, "also write the table to this file");

  auto* cat = app.add_subcommand("catalog", "list accelerators and models with derived figures");
  common.add(cat);

  try {
    app.parse(argc, argv);
    if (*sim) {
      site.engine.priority_scheduling = policy == "priority";
      site.engine.fast_forward = !step_by_step;
      if (policy != "fcfs" && policy != "priority") ig::core::fail_flag("scheduling-policy", "must be fcfs or priority");
      if (prefix_tokens == "unlimited") {
        site.engine.prefix_cache_tokens = -1;
      } else {
        std::int64_t v = 0;
        if (!ig::core::parse_int(prefix_tokens, v) || v < 0)
          ig::core::fail_flag("prefix-cache-tokens", "expected a token count or 'unlimited'");
        site.engine.prefix_cache_tokens = v;
      }
      double d = 0;
      if (!ig::core::parse_double(s["slo_ttft"], d) || d < 0) ig::core::fail_flag("slo-ttft-ms", "expected a non-negative number");
      if (!ig::core::parse_double(s["slo_tpot"], d) || d < 0) ig::core::fail_flag("slo-tpot-ms", "expected a non-negative number");
      if (generate > 0) {
        gen.count = generate;
        gen.seed = site.seed;
        gen.prompt = ig::workload::LengthDist::parse(prompt_dist, "prompt-dist");
        gen.output = ig::workload::LengthDist::parse(output_dist, "output-dist");
        if (!schedule.empty()) gen.schedule = ig::workload::GeneratorSpec::parse_schedule(schedule);
        if (!(gen.rate > 0)) ig::core::fail_flag("rate", "must be positive");
        if (!(gen.cv > 0)) ig::core::fail_flag("cv", "must be positive");
      }
      return cmd_sim(common, s, site, gen, generate > 0, !no_csv, !no_progress);
    }
    if (*perf) return cmd_perf(common, prompt, batch, output, reservation, max_model_len, util);
    if (*cal) return cmd_calibrate(common, data, fit, md);
    if (*cat) return cmd_catalog(common);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const ig::core::InputError& e) {
    std::cerr << "infergrid: error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
