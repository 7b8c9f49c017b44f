#pragma once
// `infergrid forecast`: the forecaster's accuracy on the twin's demand.csv or a replayed trace,
// against the naive forecasts (docs/control.md "Forecast accuracy").
#include <string>
#include <vector>

namespace infergrid::cli {

struct ForecastArgs {
  std::string demand;        // a demand.csv from `infergrid sim`
  std::string trace;         // or a request trace (any format `sim --trace` reads)
  double step_s = 300;       // scored on 5-minute means
  std::vector<double> horizons_s{300, 3600};
  double warmup_h = 1;       // scored from here (and from a day on where the series holds two)
  std::string json;          // also write the scores here
  // Holt-Winters' (the daily view's) parameters.
  double alpha = 0.9, beta = 0.01, gamma = 0.2, phi = 0.8, season_smooth_s = 1800;
};

int run_forecast(const ForecastArgs& a);

}  // namespace infergrid::cli
