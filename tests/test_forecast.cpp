// The forecaster on hand-worked series: a pure daily sinusoid, a step, determinism; its
// accuracy against the naive forecast (the last value) in the same run.
#include <gtest/gtest.h>

#include <cmath>

#include "control/forecast.hpp"
#include "control/forecast_eval.hpp"
#include "core/error.hpp"

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

// The published comparison (`infergrid forecast`): on an exactly periodic day the same time
// yesterday is the truth (WAPE 0), the last value is off by the curve's slope over the horizon,
// and Holt-Winters, which learns the season, is between them and within 2%.
TEST(ForecastEval, ScoresAgainstTheLastValueAndTheSameTimeYesterday) {
  const ig::control::Series s{"world/interactive", sinusoid(3)};
  ig::control::ForecastConfig hw;  // 60-s steps, the daily season
  const auto scores = ig::control::evaluate_forecasts({s}, "holt-winters", hw, {300, 3600}, 2 * 1440, false);
  ASSERT_EQ(scores.size(), 2u);
  for (const auto& sc : scores) {
    EXPECT_EQ(sc.series, "world/interactive");
    EXPECT_EQ(sc.points, 1440u - static_cast<std::size_t>(sc.horizon_s / 60)) << sc.horizon_s;
    EXPECT_NEAR(sc.wape_yesterday, 0, 1e-12) << sc.horizon_s;
    EXPECT_LT(sc.wape, 0.02) << sc.horizon_s;
    EXPECT_LT(sc.wape, sc.wape_last) << sc.horizon_s;
  }
  // The 1-hour last value: about 2/pi x 60 x sin(2 pi / 24) / 100 ~ 10% (see above).
  EXPECT_GT(scores[1].wape_last, 0.05);
  // A series shorter than two days has no yesterday to compare with.
  const ig::control::Series day{"x", sinusoid(1)};
  const auto one = ig::control::evaluate_forecasts({day}, "holt-winters", hw, {300}, 60, false);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_LT(one[0].wape_yesterday, 0);
}

TEST(ForecastEval, DemandCsvIsReadAndBadRowsNameTheirLineAndField) {
  const auto v = ig::control::parse_demand_csv("minute,group,priority,arrivals\n0,world,batch,60\n2,world,batch,120\n"
                                               "1,India,critical,6\n", "d.csv");
  ASSERT_EQ(v.size(), 2u);  // by name: India/critical, world/batch; each as long as the longest
  EXPECT_EQ(v[0].name, "India/critical");
  EXPECT_EQ(v[1].name, "world/batch");
  EXPECT_EQ(v[1].values, (std::vector<double>{1, 0, 2}));
  EXPECT_EQ(v[0].values, (std::vector<double>{0, 0.1, 0}));
  auto error = [](const std::string& text) {
    try {
      ig::control::parse_demand_csv(text, "d.csv");
    } catch (const ig::core::InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error("minute,group\n").find("d.csv:1: field 'header'"), std::string::npos) << error("minute,group\n");
  const std::string h = "minute,group,priority,arrivals\n";
  EXPECT_NE(error(h + "0,world,urgent,1\n").find("d.csv:2: field 'priority'"), std::string::npos);
  EXPECT_NE(error(h + "-1,world,batch,1\n").find("field 'minute'"), std::string::npos);
  EXPECT_NE(error(h + "0,world,batch,nan\n").find("field 'arrivals'"), std::string::npos);
  EXPECT_NE(error(h + "0,,batch,1\n").find("field 'group'"), std::string::npos);
  EXPECT_NE(error(h + "0,world,batch\n").find("d.csv:2"), std::string::npos);
  EXPECT_NE(error("").find("is empty"), std::string::npos);
  // Token demand (the twin's demand.csv): a second series per group and priority, tokens per second.
  const auto t = ig::control::parse_demand_csv("minute,group,priority,arrivals,tokens\n0,world,batch,60,120000\n1,world,batch,30,6000\n",
                                               "t.csv");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].name, "world/batch");
  EXPECT_EQ(t[1].name, "world/batch/tokens");
  EXPECT_EQ(t[0].values, (std::vector<double>{1, 0.5}));
  EXPECT_EQ(t[1].values, (std::vector<double>{2000, 100}));
  const std::string th = "minute,group,priority,arrivals,tokens\n";
  EXPECT_NE(error(th + "0,world,batch,1,-5\n").find("d.csv:2: field 'tokens'"), std::string::npos);
  EXPECT_NE(error(th + "0,world,batch,1\n").find("expected 5 fields"), std::string::npos);
  EXPECT_NE(error("minute,group,priority,arrivals,bytes\n").find("field 'header'"), std::string::npos);
}
