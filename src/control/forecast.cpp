#include "control/forecast.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace infergrid::control {

Forecaster::Forecaster(ForecastConfig cfg) : cfg_(cfg) {
  if (!(cfg_.step_s > 0) || !(cfg_.season_s >= cfg_.step_s)) core::fail_flag("forecast", "needs step_s > 0 and season_s >= step_s");
  if (!(cfg_.phi > 0 && cfg_.phi <= 1)) core::fail_flag("forecast", "needs 0 < phi <= 1");
  const auto slots = static_cast<std::size_t>(std::llround(cfg_.season_s / cfg_.step_s));
  season_.assign(slots, 0);
  seen_.assign(slots, 0);
}

double Forecaster::sigma() const { return std::sqrt(std::max(0.0, err2_)); }

void Forecaster::observe(double y, double noise_sd) {
  if (!std::isfinite(y)) return;
  const std::size_t slots = season_.size();
  const std::size_t slot = n_ % slots;
  changed_ = false;
  // The first season: forecasts are the last value; its values set the level (their mean), the
  // season (each slot's deviation from it) and the error's spread (of step-to-step changes).
  if (n_ < slots) {
    if (n_ > 0) err2_ = n_ == 1 ? (y - level_) * (y - level_) : (1 - cfg_.error_alpha) * err2_ + cfg_.error_alpha * (y - level_) * (y - level_);
    season_[slot] = y;
    seen_[slot] = 1;
    level_ = y;
    if (++n_ == slots) {
      double mean = 0;
      for (double v : season_) mean += v;
      mean /= static_cast<double>(slots);
      for (double& v : season_) v -= mean;
      if (cfg_.season_smooth > 0 && slots > 1) {  // one noisy season: its shape, not its noise
        std::vector<double> sm(slots, 0);
        const auto w = static_cast<std::ptrdiff_t>(cfg_.season_smooth);
        const auto n = static_cast<std::ptrdiff_t>(slots);
        for (std::ptrdiff_t i = 0; i < n; ++i) {
          for (std::ptrdiff_t j = -w; j <= w; ++j) sm[static_cast<std::size_t>(i)] += season_[static_cast<std::size_t>(((i + j) % n + n) % n)];
          sm[static_cast<std::size_t>(i)] /= static_cast<double>(2 * w + 1);
        }
        season_ = std::move(sm);
      }
      level_ = mean;
      trend_ = 0;
    }
    return;
  }
  const double predicted = level_ + cfg_.phi * trend_ + season_[slot];
  const double e = y - predicted;
  const double s = sigma();
  // CUSUM on the error standardized by its spread, never below the observation's own noise.
  const double sd = std::max(s, noise_sd);
  if (sd > 0) {
    const double z = e / sd;
    cusum_up_ = std::max(0.0, cusum_up_ + z - cfg_.cusum_k);
    cusum_down_ = std::max(0.0, cusum_down_ - z - cfg_.cusum_k);
    if (cusum_up_ > cfg_.cusum_h || cusum_down_ > cfg_.cusum_h) {
      changed_ = true;
      cusum_up_ = cusum_down_ = 0;
      // Re-level at once: the new regime is the observation; the trend learns from the jump as
      // from any step (a ramp that keeps raising alarms is still learned as a trend).
      const double last_level = level_;
      level_ = y - season_[slot];
      trend_ = cfg_.beta * (level_ - last_level) + (1 - cfg_.beta) * trend_;
      ++n_;
      return;
    }
  }
  err2_ = (1 - cfg_.error_alpha) * err2_ + cfg_.error_alpha * e * e;
  const double last_level = level_;
  level_ = cfg_.alpha * (y - season_[slot]) + (1 - cfg_.alpha) * (level_ + cfg_.phi * trend_);
  trend_ = cfg_.beta * (level_ - last_level) + (1 - cfg_.beta) * cfg_.phi * trend_;
  season_[slot] = cfg_.gamma * (y - level_) + (1 - cfg_.gamma) * season_[slot];
  ++n_;
}

Forecaster::Quantiles Forecaster::forecast(double horizon_s) const {
  // Steps ahead, fractional (a horizon between two steps takes the trend that far); the season's
  // slot is the nearest whole step's.
  const double k = std::max(1.0, horizon_s / cfg_.step_s);
  const auto whole = static_cast<std::size_t>(std::llround(k));
  const std::size_t slot = (n_ + whole - 1) % season_.size();
  Quantiles q;
  const bool seasonal = n_ >= season_.size();
  // The trend's reach: k steps, or phi + phi^2 + ... + phi^k when damped (phi < 1).
  const double reach = cfg_.phi < 1 ? cfg_.phi * (1 - std::pow(cfg_.phi, k)) / (1 - cfg_.phi) : k;
  q.p50 = std::max(0.0, seasonal ? level_ + trend_ * reach + season_[slot] : level_);
  // The error of k steps ahead grows as a random walk's: sigma x sqrt(k); 1.2816 for the p90.
  q.p90 = q.p50 + 1.2816 * sigma() * std::sqrt(k);
  return q;
}

ForecastScore score_forecast(const std::vector<double>& series, std::size_t h, std::size_t warmup,
                             const ForecastConfig& cfg, bool naive) {
  Forecaster f(cfg);
  ForecastScore s;
  double abs_err = 0, total = 0;
  std::size_t covered = 0;
  for (std::size_t t = 0; t + h < series.size(); ++t) {
    f.observe(series[t]);
    if (t < warmup) continue;
    const auto q = f.forecast(static_cast<double>(h) * cfg.step_s);
    const double p50 = naive ? series[t] : q.p50;
    const double actual = series[t + h];
    abs_err += std::abs(p50 - actual);
    total += std::abs(actual);
    covered += actual <= (naive ? series[t] : q.p90);
    ++s.points;
  }
  s.wape = total > 0 ? abs_err / total : 0;
  s.p90_coverage = s.points ? static_cast<double>(covered) / static_cast<double>(s.points) : 0;
  return s;
}

}  // namespace infergrid::control
