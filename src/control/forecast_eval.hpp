#pragma once
// The forecaster's accuracy, published (docs/control.md "Forecast accuracy"): each series is
// replayed through a fresh Forecaster, and its p50 and p90 `h` ahead are scored against what came,
// beside the two naive forecasts an operator would use: the last value, and the same time a day
// earlier. Series come from the twin's demand.csv (arrivals per minute by country
// group and priority) or from a replayed trace's arrivals.
#include <string>
#include <string_view>
#include <vector>

#include "control/forecast.hpp"

namespace infergrid::control {

struct Series {
  std::string name;
  std::vector<double> values;  // a rate per second, one per step
};

struct HorizonScore {
  std::string series, model;
  double horizon_s = 0;
  std::size_t points = 0;
  double wape = 0, p90_coverage = 0;  // the forecaster's p50 and p90
  double wape_last = 0;               // the last value as the forecast
  double wape_yesterday = -1;         // the same step a day earlier (-1: the series is shorter)
};

// Every series at every horizon (seconds, whole steps), scored from step `warmup` on (from a day
// on when the series is longer, so that the same-time-yesterday forecast exists at every scored
// point). `counts`: values are Poisson counts' rates, whose noise floors the change test.
std::vector<HorizonScore> evaluate_forecasts(const std::vector<Series>& series, const std::string& model,
                                             const ForecastConfig& cfg, const std::vector<double>& horizons_s,
                                             std::size_t warmup, bool counts = true);

// demand.csv: `minute,group,priority,arrivals[,tokens]` (a header, then one row per minute, group
// and priority; minutes from 0, any order) into one series per group and priority, as rates per
// second over steps of `step_s` (minutes summed into the step they fall in), and with a tokens
// column a second series per group and priority, named ".../tokens": tokens per second. Throws
// InputError naming the file, line and field.
std::vector<Series> parse_demand_csv(std::string_view text, const std::string& file, double step_s = 60);
std::vector<Series> read_demand_csv(const std::string& path, double step_s = 60);

}  // namespace infergrid::control
