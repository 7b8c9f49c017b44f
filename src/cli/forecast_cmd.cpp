#include "cli/forecast_cmd.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "control/fleet.hpp"
#include "control/forecast_eval.hpp"
#include "core/error.hpp"
#include "workload/trace.hpp"

namespace infergrid::cli {

namespace {

// A trace's arrivals per step, from its first request, as one series of rates per second.
control::Series trace_series(const std::string& path, double step_s) {
  auto src = workload::open_trace(path, workload::detect_trace_format(path));
  control::Series s{"trace", {}};
  workload::Request r;
  core::Ns t0 = 0;
  bool first = true;
  const auto step_ns = static_cast<core::Ns>(step_s * 1e9);
  while (src->next(r)) {
    if (first) t0 = r.arrival, first = false;
    const auto k = static_cast<std::size_t>(std::max<core::Ns>(0, r.arrival - t0) / step_ns);
    if (k >= 60 * 24 * 366) core::fail_input(path, 0, "timestamp", "the trace spans more than a year");
    if (s.values.size() <= k) s.values.resize(k + 1, 0);
    s.values[k] += 1 / step_s;
  }
  if (s.values.empty()) core::fail_input(path, 0, "", "holds no requests");
  return s;
}

}  // namespace

int run_forecast(const ForecastArgs& a) {
  if (a.demand.empty() == a.trace.empty()) core::fail_flag("demand", "give one of --demand FILE or --trace FILE");
  if (!(a.step_s > 0)) core::fail_flag("step", "must be positive");
  if (!(a.warmup_h >= 0)) core::fail_flag("warmup-h", "must be non-negative");
  for (double h : a.horizons_s)
    if (!(h >= a.step_s)) core::fail_flag("horizons", "each horizon must be at least one step");
  const auto series = a.demand.empty() ? std::vector<control::Series>{trace_series(a.trace, a.step_s)}
                                       : control::read_demand_csv(a.demand, a.step_s);
  // The two forecasters infergrid runs: Holt's level and trend over minute means (what its
  // controller sizes with), and Holt-Winters with the daily season (a day-ahead view).
  const auto ig = control::controller_defaults("infergrid");
  control::ForecastConfig holt;
  holt.step_s = holt.season_s = a.step_s;
  holt.gamma = 0;
  holt.alpha = ig.at("forecast_alpha");
  holt.beta = ig.at("forecast_beta");
  holt.phi = ig.at("forecast_phi");
  control::ForecastConfig hw;
  hw.step_s = a.step_s;
  hw.season_s = 86400;
  hw.alpha = a.alpha;
  hw.beta = a.beta;
  hw.gamma = a.gamma;
  hw.phi = a.phi;
  hw.season_smooth = static_cast<int>(std::lround(a.season_smooth_s / a.step_s));
  const auto warmup = static_cast<std::size_t>(std::llround(a.warmup_h * 3600 / a.step_s));
  // Arrivals are Poisson counts (their noise floors the change test); token demand is not.
  std::vector<control::Series> counts, tokens;
  for (const auto& s : series) (s.name.ends_with("/tokens") ? tokens : counts).push_back(s);
  std::vector<control::HorizonScore> scores;
  for (const auto* set : {&counts, &tokens}) {
    if (set->empty()) continue;
    const bool poisson = set == &counts;
    auto some = control::evaluate_forecasts(*set, "holt", holt, a.horizons_s, warmup, poisson);
    scores.insert(scores.end(), some.begin(), some.end());
    if (hw.season_s >= a.step_s) {
      auto more = control::evaluate_forecasts(*set, "holt-winters", hw, a.horizons_s, warmup, poisson);
      scores.insert(scores.end(), more.begin(), more.end());
    }
  }
  std::stable_sort(scores.begin(), scores.end(), [](const auto& x, const auto& y) {
    return x.series != y.series ? x.series < y.series : x.horizon_s < y.horizon_s;
  });
  fmt::print("| series | horizon | forecaster | points | WAPE | p90 coverage | WAPE last value | WAPE same time yesterday |\n");
  fmt::print("|---|---|---|---|---|---|---|---|\n");
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : scores) {
    fmt::print("| {} | {:.0f} min | {} | {} | {:.1f}% | {:.1f}% | {:.1f}% | {} |\n", s.series, s.horizon_s / 60, s.model, s.points,
               100 * s.wape, 100 * s.p90_coverage, 100 * s.wape_last,
               s.wape_yesterday < 0 ? std::string("-") : fmt::format("{:.1f}%", 100 * s.wape_yesterday));
    out.push_back({{"series", s.series}, {"horizon_s", s.horizon_s}, {"forecaster", s.model}, {"points", s.points},
                   {"wape", s.wape}, {"p90_coverage", s.p90_coverage}, {"wape_last", s.wape_last},
                   {"wape_yesterday", s.wape_yesterday < 0 ? nlohmann::json(nullptr) : nlohmann::json(s.wape_yesterday)}});
  }
  if (!a.json.empty()) {
    std::ofstream f(a.json);
    if (!f) core::fail_input(a.json, 0, "", "cannot write");
    f << out.dump(2) << "\n";
  }
  return 0;
}

}  // namespace infergrid::cli
