#include "model/calibrate.hpp"

#include <algorithm>
#include <array>
#include <functional>
#include <cmath>
#include <fmt/format.h>
#include <map>
#include <tuple>

#include "core/csv.hpp"
#include "core/error.hpp"
#include "core/optimize.hpp"
#include "core/sketch.hpp"
#include "core/rng.hpp"

namespace infergrid::model {

using core::median;

std::vector<MeasuredGroup> load_measurements(const std::string& path) {
  core::LineReader in(path);
  std::string line;
  std::vector<std::string> f;
  if (!in.next(line)) core::fail_input(path, 1, "", "empty file");
  core::split_csv(line, f);
  const std::size_t ncols = f.size();  // a repeated name leaves col smaller than the header
  std::map<std::string, std::size_t> col;
  for (std::size_t i = 0; i < f.size(); ++i) col[std::string(core::trim(f[i]))] = i;
  const char* need[] = {"model", "hardware", "prompt_size", "batch_size", "token_size",
                        "prompt_time", "token_time", "e2e_time", "tensor_parallel"};
  for (const char* n : need)
    if (!col.count(n)) core::fail_input(path, 1, n, "missing column");
  using Key = std::tuple<std::string, std::string, int, int, int, int>;
  const bool has_power = col.count("average_power") > 0;
  std::map<Key, std::array<std::vector<double>, 4>> acc;
  while (in.next(line)) {
    if (core::trim(line).empty()) continue;
    if (!core::split_csv(line, f) || f.size() < ncols)
      core::fail_input(path, in.line_number(), "", "wrong number of fields");
    auto geti = [&](const char* name) {
      std::int64_t v = 0;
      if (!core::parse_int(f[col[name]], v) || v < 1 || v > 100'000'000)
        core::fail_input(path, in.line_number(), name, "expected a positive integer up to 100000000");
      return static_cast<int>(v);
    };
    auto getd = [&](const char* name) {
      double v = 0;
      if (!core::parse_double(f[col[name]], v) || v <= 0)
        core::fail_input(path, in.line_number(), name, "expected a positive number");
      return v;
    };
    Key k{f[col["model"]], f[col["hardware"]], geti("tensor_parallel"), geti("prompt_size"),
          geti("batch_size"), geti("token_size")};
    auto& a = acc[k];
    a[0].push_back(getd("prompt_time"));
    a[1].push_back(getd("token_time"));
    a[2].push_back(getd("e2e_time"));
    if (has_power) {
      double pw = 0;
      if (!core::parse_double(f[col["average_power"]], pw) || !(pw >= 0 && pw <= 2))
        core::fail_input(path, in.line_number(), "average_power",
                         "expected a fraction of board power in [0, 2]");
      a[3].push_back(pw);
    }
  }
  std::vector<MeasuredGroup> out;
  for (auto& [k, a] : acc) {
    MeasuredGroup g;
    std::tie(g.model, g.gpu, g.tp, g.prompt, g.batch, g.output) = k;
    g.repetitions = static_cast<int>(a[0].size());
    g.prompt_ms = median(a[0]);
    g.token_ms = median(a[1]);
    g.e2e_ms = median(a[2]);
    g.avg_power_frac = a[3].empty() ? 0 : median(a[3]);
    g.isolated = g.e2e_ms <= 2 * (g.prompt_ms + g.output * g.token_ms);
    out.push_back(g);
  }
  return out;
}

namespace {
Validation validate_with(const Catalog& catalog, const std::vector<MeasuredGroup>& groups,
                         const Harness& h, const std::string& only_gpu, const Calibration* calib) {
  Validation v;
  for (const auto& g : groups) {
    if (!only_gpu.empty() && g.gpu != only_gpu) continue;
    Accelerator a = catalog.accelerator(g.gpu);
    if (calib) a.calib = *calib;
    const PerfModel pm(catalog.llm(g.model), a, g.tp);
    GroupResult r;
    r.measured = g;
    r.predicted = predict_isolated_batch(pm, g.prompt, g.batch, g.output, h.reservation,
                                         h.max_model_len, h.gpu_memory_utilization);
    r.prompt_err = std::fabs(r.predicted.prompt_time_ms - g.prompt_ms) / g.prompt_ms;
    r.token_err = std::fabs(r.predicted.token_time_ms - g.token_ms) / g.token_ms;
    if (g.avg_power_frac > 0) {
      r.measured_w = g.avg_power_frac * a.tdp_w;
      r.predicted_w = r.predicted.energy_j / (r.predicted.e2e_time_ms * 1e-3 * g.tp);
      r.power_err = std::fabs(r.predicted_w - r.measured_w) / r.measured_w;
      // A run that is busy throughout cannot average near idle: the A100 8,192-token rows read
      // 69-73 W (idle 63 W) while prefilling at full compute, a failed power sample. Shown, not counted.
      r.power_plausible = r.measured_w > 1.25 * a.idle_w;
      if (g.isolated && r.power_plausible) {
        v.mape_power += r.power_err;
        ++v.power_counted;
      }
    }
    if (g.isolated) {
      v.mape_prompt += r.prompt_err;
      v.mape_token += r.token_err;
      ++v.counted;
    }
    v.groups.push_back(r);
  }
  if (v.counted) {
    v.mape_prompt /= double(v.counted);
    v.mape_token /= double(v.counted);
  }
  if (v.power_counted) v.mape_power /= double(v.power_counted);
  return v;
}

constexpr int kDims = 7;
using Vec = std::array<double, kDims>;

// Parameters in units that keep the simplex well scaled (microseconds, milliseconds).
Calibration to_calib(const Vec& x) {
  Calibration c;
  c.compute_eff = x[0];
  c.memory_eff = x[1];
  c.allreduce_latency_s = x[2] * 1e-6;
  c.allreduce_bw_eff = x[3];
  c.decode_overhead_s = x[4] * 1e-3;
  c.prefill_overhead_s = x[5] * 1e-3;
  c.prefill_seq_overhead_s = x[6] * 1e-3;
  return c;
}
bool feasible(const Vec& x) {
  for (double v : x)
    if (v < 0) return false;
  return x[0] > 0.02 && x[0] <= 1 && x[1] > 0.02 && x[1] <= 1 && x[3] > 0.01 && x[3] <= 1;
}

}  // namespace

Validation validate(const Catalog& catalog, const std::vector<MeasuredGroup>& groups,
                    const Harness& harness) {
  return validate_with(catalog, groups, harness, "", nullptr);
}

Calibration fit_calibration(const Catalog& catalog, const std::string& gpu,
                            const std::vector<MeasuredGroup>& groups, const Harness& harness,
                            int restarts) {
  auto objective = [&](const Vec& x) {
    if (!feasible(x)) return 1e9;
    const Calibration c = to_calib(x);
    const Validation v = validate_with(catalog, groups, harness, gpu, &c);
    return v.mape_prompt + v.mape_token;
  };
  core::Rng rng(1, "calibrate/" + gpu);
  Vec best{};
  double best_f = 1e18;
  for (int r = 0; r < restarts; ++r) {
    Vec x{0.3 + 0.6 * rng.uniform(), 0.5 + 0.45 * rng.uniform(), 10 + 50 * rng.uniform(),
          0.05 + 0.45 * rng.uniform(), 2 + 13 * rng.uniform(), 20 * rng.uniform(),
          5 * rng.uniform()};
    for (int rep = 0; rep < 3; ++rep) x = core::nelder_mead<kDims>(objective, x, 1500);
    const double fx = objective(x);
    if (fx < best_f) best_f = fx, best = x;
  }
  return to_calib(best);
}

std::string validation_markdown(const Validation& v) {
  std::string s =
      "| accelerator | TP | prompt | batch | output | prompt_time measured ms | predicted | error "
      "| token_time measured ms | predicted | error |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
  std::map<std::pair<std::string, int>, std::array<double, 3>> per;
  for (const auto& r : v.groups) {
    const auto& g = r.measured;
    s += fmt::format("| {} | {} | {} | {} | {} | {:.1f} | {:.1f} | {:.1f}% | {:.2f} | {:.2f} | {:.1f}% |\n",
                     g.gpu, g.tp, g.prompt, g.batch, g.output, g.prompt_ms,
                     r.predicted.prompt_time_ms, 100 * r.prompt_err, g.token_ms,
                     r.predicted.token_time_ms, 100 * r.token_err);
    if (!g.isolated) {
      s.insert(s.size() - 1, fmt::format(" not isolated: e2e {:.0f} ms |", g.e2e_ms));
      continue;
    }
    auto& a = per[{g.gpu, g.tp}];
    a[0] += r.prompt_err;
    a[1] += r.token_err;
    a[2] += 1;
  }
  s += "\n| accelerator | TP | isolated groups | MAPE prompt_time | MAPE token_time |\n|---|---|---|---|---|\n";
  for (auto& [k, a] : per)
    s += fmt::format("| {} | {} | {:.0f} | {:.1f}% | {:.1f}% |\n", k.first, k.second, a[2],
                     100 * a[0] / a[2], 100 * a[1] / a[2]);
  s += fmt::format("| all | | {} | {:.1f}% | {:.1f}% |\n", v.counted, 100 * v.mape_prompt,
                   100 * v.mape_token);
  if (v.power_counted == 0) return s;
  // Power: the batch sweep (one prompt and output length, batch 1..N) shows how decode power
  // grows with the batch; the per-TP means cover every group with a measured power.
  s += "\n| accelerator | TP | prompt | batch | output | average W measured | predicted | error |\n"
       "|---|---|---|---|---|---|---|---|\n";
  std::map<std::pair<std::string, int>, std::array<double, 2>> pw;
  for (const auto& r : v.groups) {
    const auto& g = r.measured;
    if (g.avg_power_frac <= 0 || !g.isolated) continue;
    if (r.power_plausible) {
      auto& a = pw[{g.gpu, g.tp}];
      a[0] += r.power_err;
      a[1] += 1;
    }
    if ((g.prompt != 512 || g.output != 128) && r.power_plausible) continue;
    s += fmt::format("| {} | {} | {} | {} | {} | {:.0f} | {:.0f} | {:.1f}%{} |\n", g.gpu, g.tp, g.prompt,
                     g.batch, g.output, r.measured_w, r.predicted_w, 100 * r.power_err,
                     r.power_plausible ? "" : " (near idle: not counted)");
  }
  s += "\n| accelerator | TP | groups with power | MAPE average power |\n|---|---|---|---|\n";
  for (auto& [k, a] : pw)
    s += fmt::format("| {} | {} | {:.0f} | {:.1f}% |\n", k.first, k.second, a[1], 100 * a[0] / a[1]);
  s += fmt::format("| all | | {} | {:.1f}% |\n", v.power_counted, 100 * v.mape_power);
  return s;
}

}  // namespace infergrid::model
