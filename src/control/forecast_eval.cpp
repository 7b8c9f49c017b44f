#include "control/forecast_eval.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "core/csv.hpp"
#include "core/error.hpp"

namespace infergrid::control {

std::vector<HorizonScore> evaluate_forecasts(const std::vector<Series>& series, const std::string& model,
                                             const ForecastConfig& cfg, const std::vector<double>& horizons_s,
                                             std::size_t warmup, bool counts) {
  const auto season = static_cast<std::size_t>(std::llround(86400 / cfg.step_s));  // "yesterday"
  std::vector<HorizonScore> out;
  for (const auto& s : series) {
    const auto& y = s.values;
    for (double hs : horizons_s) {
      const auto h = static_cast<std::size_t>(std::max(1.0, std::round(hs / cfg.step_s)));
      HorizonScore sc;
      sc.series = s.name;
      sc.model = model;
      sc.horizon_s = static_cast<double>(h) * cfg.step_s;
      // Yesterday exists at t + h >= season for every scored t once t >= season (h >= 1).
      const bool yesterday = y.size() > season + h;
      const std::size_t from = yesterday ? std::max(warmup, season) : warmup;
      Forecaster f(cfg);
      double err = 0, err_last = 0, err_y = 0, total = 0;
      std::size_t covered = 0;
      for (std::size_t t = 0; t + h < y.size(); ++t) {
        const double noise = counts ? std::sqrt(std::max(y[t], 1 / cfg.step_s) / cfg.step_s) : 0;
        f.observe(y[t], noise);
        if (t < from) continue;
        const auto q = f.forecast(static_cast<double>(h) * cfg.step_s);
        const double actual = y[t + h];
        err += std::abs(q.p50 - actual);
        err_last += std::abs(y[t] - actual);
        if (yesterday) err_y += std::abs(y[t + h - season] - actual);
        total += actual;
        covered += actual <= q.p90;
        ++sc.points;
      }
      if (sc.points == 0) continue;
      const double denom = total > 0 ? total : 1;
      sc.wape = err / denom;
      sc.wape_last = err_last / denom;
      sc.wape_yesterday = yesterday ? err_y / denom : -1;
      sc.p90_coverage = static_cast<double>(covered) / static_cast<double>(sc.points);
      out.push_back(sc);
    }
  }
  return out;
}

std::vector<Series> parse_demand_csv(std::string_view text, const std::string& file, double step_s) {
  if (!(step_s > 0)) core::fail_flag("step", "must be positive");
  std::map<std::string, std::vector<double>> by;
  std::int64_t line_no = 0;
  bool header = false;
  std::size_t columns = 4;
  std::vector<std::string> f;
  constexpr std::int64_t kMaxMinutes = 60 * 24 * 366;  // a year of minutes
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (!core::split_csv(line, f)) core::fail_input(file, line_no, "", "unterminated quote");
    if (!header) {
      if ((f.size() != 4 && f.size() != 5) || f[0] != "minute" || f[1] != "group" || f[2] != "priority" ||
          f[3] != "arrivals" || (f.size() == 5 && f[4] != "tokens"))
        core::fail_input(file, line_no, "header", "expected 'minute,group,priority,arrivals' and optionally ',tokens'");
      header = true;
      columns = f.size();
      continue;
    }
    if (f.size() != columns) core::fail_input(file, line_no, "", fmt::format("expected {} fields, found {}", columns, f.size()));
    std::int64_t minute = -1;
    if (!core::parse_int(f[0], minute) || minute < 0 || minute >= kMaxMinutes)
      core::fail_input(file, line_no, "minute", fmt::format("'{}' is not a minute in [0, {})", f[0], kMaxMinutes));
    if (f[1].empty()) core::fail_input(file, line_no, "group", "is empty");
    if (f[2] != "critical" && f[2] != "interactive" && f[2] != "batch")
      core::fail_input(file, line_no, "priority", fmt::format("'{}' is not critical, interactive or batch", f[2]));
    double n = -1;
    if (!core::parse_double(f[3], n) || n < 0)
      core::fail_input(file, line_no, "arrivals", fmt::format("'{}' is not a non-negative count", f[3]));
    const auto k = static_cast<std::size_t>(std::floor(static_cast<double>(minute) * 60 / step_s));  // the step it falls in
    auto& v = by[f[1] + "/" + f[2]];
    if (v.size() <= k) v.resize(k + 1, 0);
    v[k] += n / step_s;
    if (columns == 5) {
      double t = -1;
      if (!core::parse_double(f[4], t) || t < 0)
        core::fail_input(file, line_no, "tokens", fmt::format("'{}' is not a non-negative count", f[4]));
      auto& tv = by[f[1] + "/" + f[2] + "/tokens"];
      if (tv.size() <= k) tv.resize(k + 1, 0);
      tv[k] += t / step_s;
    }
  }
  if (!header) core::fail_input(file, 0, "", "is empty (expected a 'minute,group,priority,arrivals' header)");
  std::vector<Series> out;
  std::size_t len = 0;
  for (const auto& [_, v] : by) len = std::max(len, v.size());
  for (auto& [name, v] : by) {
    v.resize(len, 0);  // a minute with no row had no arrivals
    out.push_back({name, std::move(v)});
  }
  return out;
}

std::vector<Series> read_demand_csv(const std::string& path, double step_s) {
  std::ifstream in(path, std::ios::binary);
  if (!in) core::fail_input(path, 0, "", "cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_demand_csv(ss.str(), path, step_s);
}

}  // namespace infergrid::control
