// The forecaster on hand-worked series: a pure daily sinusoid, a step, determinism; its
// accuracy against the naive forecast (the last value) in the same run.
#include <gtest/gtest.h>

#include <cmath>

#include "control/forecast.hpp"

namespace ig = infergrid;

namespace {
constexpr double kPi = 3.14159265358979323846;
// One value a minute: 100 + 60 sin(2 pi t / day), `days` days.
std::vector<double> sinusoid(int days) {
  std::vector<double> v;
  for (int m = 0; m < days * 1440; ++m) v.push_back(100 + 60 * std::sin(2 * kPi * m / 1440.0));
  return v;
}
}  // namespace

TEST(Forecast, LearnsAPureDailySinusoidAndBeatsTheLastValue) {
  const auto v = sinusoid(4);
  for (std::size_t h : {5u, 60u}) {
    const auto f = ig::control::score_forecast(v, h, 2 * 1440);
    const auto naive = ig::control::score_forecast(v, h, 2 * 1440, {}, true);
    EXPECT_LT(f.wape, 0.02) << h;                // within 2% at 5 min and 1 h, from day 3
    EXPECT_LT(f.wape, naive.wape) << h;          // naive: 60 x the slope over the horizon
    EXPECT_GE(f.p90_coverage, 0.85) << h;
  }
  // The 1-hour naive error of this curve is large: about 2/pi x 60 x 2 pi / 24 / 100 = 10%.
  EXPECT_GT(ig::control::score_forecast(v, 60, 2 * 1440, {}, true).wape, 0.05);
}

TEST(Forecast, ASurgeIsDetectedWithinMinutesAndTheLevelFollows) {
  // Two flat days at 100 (with a little noise), then 300 from minute 3000.
  std::vector<double> v;
  for (int m = 0; m < 3100; ++m) v.push_back((m < 3000 ? 100.0 : 300.0) + ((m * 7919) % 11 - 5) * 0.5);
  ig::control::Forecaster f;
  int detected = -1;
  for (int m = 0; m < 3100; ++m) {
    f.observe(v[static_cast<std::size_t>(m)]);
    if (m >= 2 * 1440 && m < 3000) EXPECT_FALSE(f.changed()) << "a false alarm at minute " << m;
    if (m >= 3000 && f.changed() && detected < 0) detected = m;
  }
  ASSERT_GE(detected, 3000);
  EXPECT_LE(detected, 3002);
  EXPECT_NEAR(f.forecast(300).p50, 300, 15);
}

TEST(Forecast, TheSameObservationsGiveTheSameForecasts) {
  const auto v = sinusoid(2);
  ig::control::Forecaster a, b;
  for (double x : v) a.observe(x), b.observe(x);
  EXPECT_EQ(a.forecast(3600).p50, b.forecast(3600).p50);
  EXPECT_EQ(a.forecast(3600).p90, b.forecast(3600).p90);
}
