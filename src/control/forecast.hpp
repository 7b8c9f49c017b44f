#pragma once
// A demand forecaster for one series (a metro group's and class's observed arrivals): additive
// Holt-Winters (level, trend and a daily season of one slot per step) with quantiles from the
// spread of its own one-step errors, and a CUSUM change-point detector on those errors that
// re-levels at once when a surge (or a drop) starts. Fed only what monitoring observed, one value
// per step; pure (no clock): the same observations give the same forecasts.
#include <cstddef>
#include <vector>

namespace infergrid::control {

struct ForecastConfig {
  double step_s = 60;        // one observation per step (a rate over the step)
  double season_s = 86400;   // the daily shape
  double alpha = 0.3;        // level
  double beta = 0.02;        // trend
  double gamma = 0.3;        // season
  double phi = 1;            // trend damping (Gardner): k steps ahead add trend x (phi + ... + phi^k)
  int season_smooth = 0;     // the first season's slots averaged over +-this many neighbours
  double error_alpha = 0.05; // the squared one-step error's moving average
  double cusum_k = 0.5;      // slack, in standard deviations
  double cusum_h = 4;        // alarm threshold, in standard deviations
};

class Forecaster {
 public:
  explicit Forecaster(ForecastConfig cfg = {});
  // The next step's observation; `noise_sd`: its own measurement noise (e.g. a Poisson count's
  // over the step), a floor under the error spread the change-point test standardizes by.
  void observe(double value, double noise_sd = 0);
  struct Quantiles {
    double p50 = 0, p90 = 0;
  };
  // The value `horizon_s` after the last observation (at least one step ahead).
  Quantiles forecast(double horizon_s) const;
  // A change point at the last observation: the level was reset to it.
  bool changed() const { return changed_; }
  std::size_t observations() const { return n_; }
  double sigma() const;  // of the one-step error

 private:
  ForecastConfig cfg_;
  std::vector<double> season_;
  std::vector<char> seen_;  // a season slot has had its first value
  double level_ = 0, trend_ = 0, err2_ = 0;
  double cusum_up_ = 0, cusum_down_ = 0;
  std::size_t n_ = 0;
  bool changed_ = false;
};

// Accuracy over a series: weighted absolute percentage error (sum |forecast - actual| / sum
// actual) and the share of actuals at or below the p90.
struct ForecastScore {
  double wape = 0, p90_coverage = 0;
  std::size_t points = 0;
};
// Replays `series` (one value per step) through a fresh forecaster, scoring its forecasts
// `horizon_steps` ahead from the `warmup` step on; `naive` scores the last value instead.
ForecastScore score_forecast(const std::vector<double>& series, std::size_t horizon_steps, std::size_t warmup,
                             const ForecastConfig& cfg = {}, bool naive = false);

}  // namespace infergrid::control
