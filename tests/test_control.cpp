// The baseline controllers on hand-worked views: what each decides, and when.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "control/fleet.hpp"
#include "control/site_router.hpp"
#include "core/error.hpp"

namespace ig = infergrid;
using ig::control::Decisions;
using ig::control::FleetView;

namespace {

// One site, one deployment of `ready` replicas (of at most 8).
FleetView view(double t, int ready, int waiting, double kv, double qps = 0, int starting = 0) {
  FleetView v;
  v.t_s = t;
  v.window_s = 15;
  v.sites.push_back({0, "s", true, 0, 0, 0, {}});
  ig::control::DeploymentState d;
  d.id = 0;
  d.site = 0;
  d.ready = ready;
  d.starting = starting;
  d.max_replicas = 8;
  d.waiting = waiting;
  d.kv_usage = kv;
  d.arrivals_per_s = qps;
  v.deployments.push_back(d);
  return v;
}

int scaled(ig::control::Controller& c, const FleetView& v) {
  Decisions d;
  c.decide(v, d);
  return d.scale.empty() ? -1 : d.scale[0].replicas;
}

}  // namespace

TEST(Control, StaticNeverDecides) {
  auto c = ig::control::make_controller("static", {}, 1);
  Decisions d;
  c->decide(view(15, 2, 100, 0.99, 100), d);
  EXPECT_TRUE(d.empty());
  EXPECT_EQ(c->period_s(), 0);
}

TEST(Control, ReactiveIsLlmDsSaturationAnalyzer) {
  auto c = ig::control::make_controller("reactive", {}, 1);
  EXPECT_EQ(c->period_s(), 60);
  // Saturated (KV 0.85 >= 0.8): one more.
  EXPECT_EQ(scaled(*c, view(60, 2, 0, 0.85)), 3);
  // Not saturated, but spare KV 0.8 - 0.75 = 0.05 < 0.1: one more.
  EXPECT_EQ(scaled(*c, view(60, 2, 0, 0.75)), 3);
  // Spare queue 5 - 2.5 = 2.5 < 3 (5 waiting over 2): one more.
  EXPECT_EQ(scaled(*c, view(60, 2, 5, 0.1)), 3);
  // Not while a replica is starting.
  EXPECT_EQ(scaled(*c, view(60, 2, 0, 0.85, 0, 1)), -1);
  // Comfortable with 4 (KV 0.5, 1 waiting each), and with 3: over 3 the KV would be 0.67, spare
  // 0.13 >= 0.1, queue 1.33, spare 3.67 >= 3: one fewer.
  EXPECT_EQ(scaled(*c, view(60, 4, 4, 0.5)), 3);
  // KV 0.6 over 4 -> 0.8 over 3: no spare left: hold.
  EXPECT_EQ(scaled(*c, view(60, 4, 0, 0.6)), -1);
  // Never below one replica, never past the pool.
  EXPECT_EQ(scaled(*c, view(60, 1, 0, 0.0)), -1);
  EXPECT_EQ(scaled(*c, view(60, 8, 100, 0.99)), -1);
}

TEST(Control, SkyServeWaitsForItsDelays) {
  // From zero the delay is ignored.
  auto z = ig::control::make_controller("skyserve", {{"target_qps_per_replica", 2}}, 1);
  EXPECT_EQ(scaled(*z, view(20, 0, 0, 0, 3)), 2);
  auto c = ig::control::make_controller("skyserve", {{"target_qps_per_replica", 2}}, 1);
  // 10 QPS at 2 per replica: 5 replicas, once the target has held for the upscale delay (300 s
  // = 15 periods of 20 s).
  for (int k = 1; k < 15; ++k) EXPECT_EQ(scaled(*c, view(20.0 * k, 2, 0, 0, 10)), -1) << k;
  EXPECT_EQ(scaled(*c, view(300, 2, 0, 0, 10)), 5);
  // Down to 1 after 1200 s (60 periods) below.
  for (int k = 1; k < 60; ++k) EXPECT_EQ(scaled(*c, view(300 + 20.0 * k, 5, 0, 0, 0.5)), -1) << k;
  EXPECT_EQ(scaled(*c, view(1500, 5, 0, 0, 0.5)), 1);
}

TEST(Control, DynamoStepsOneReplicaOnLoadThresholds) {
  auto c = ig::control::make_controller("dynamo", {}, 1);
  EXPECT_EQ(c->period_s(), 30);
  EXPECT_EQ(scaled(*c, view(30, 3, 0, 0.8)), -1);   // between 0.5 and 0.9: hold
  EXPECT_EQ(scaled(*c, view(60, 3, 0, 0.95)), 4);   // KV above 0.9: one up
  EXPECT_EQ(scaled(*c, view(90, 3, 0, 0.99, 0, 1)), -1);  // waits while it starts
  // Three intervals of grace after a scale-up, then light load (KV 0.2, no queue) takes one off.
  EXPECT_EQ(scaled(*c, view(120, 4, 0, 0.2)), -1);
  EXPECT_EQ(scaled(*c, view(150, 4, 0, 0.2)), -1);
  EXPECT_EQ(scaled(*c, view(180, 4, 0, 0.2)), 3);
  // Queued prefills per replica above 0.5 (3 waiting over 4): one up.
  auto q = ig::control::make_controller("dynamo", {}, 1);
  EXPECT_EQ(scaled(*q, view(30, 4, 3, 0.6)), 5);
  // A moving average when asked: history 3 of 0.8, 0.95, 0.98 -> 0.91 > 0.9.
  auto m = ig::control::make_controller("dynamo", {{"history", 3}}, 1);
  EXPECT_EQ(scaled(*m, view(30, 3, 0, 0.8)), -1);
  EXPECT_EQ(scaled(*m, view(60, 3, 0, 0.95)), -1);
  EXPECT_EQ(scaled(*m, view(90, 3, 0, 0.98)), 4);
  // Never below one.
  auto e = ig::control::make_controller("dynamo", {}, 1);
  EXPECT_EQ(scaled(*e, view(30, 1, 0, 0.0)), -1);
}

TEST(Control, DecisionsAreAFunctionOfTheViews) {
  for (const auto& name : ig::control::controller_names()) {
    auto a = ig::control::make_controller(name, {}, 7);
    auto b = ig::control::make_controller(name, {}, 7);
    for (int k = 1; k <= 40; ++k) {
      const auto v = view(15.0 * k, 1 + k % 4, (k * 7) % 30, (k % 10) / 10.0, k % 13);
      EXPECT_EQ(scaled(*a, v), scaled(*b, v)) << name << " " << k;
    }
  }
}

TEST(Control, UnknownControllerOrParameterIsAClearError) {
  try {
    ig::control::make_controller("magic", {}, 1);
    FAIL();
  } catch (const ig::core::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("static, reactive, skyserve, dynamo, infergrid"), std::string::npos) << e.what();
  }
  try {
    ig::control::make_controller("skyserve", {{"target_qps", 3}}, 1);
    FAIL();
  } catch (const ig::core::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("target_qps_per_replica"), std::string::npos) << e.what();
  }
}

TEST(Control, AParameterMaySetOneModelApart) {
  // SkyServe's target QPS is per service (one model): NAME@MODEL overrides NAME for that model.
  auto c = ig::control::make_controller("skyserve", {{"target_qps_per_replica", 2}, {"target_qps_per_replica@big", 0.5}}, 1);
  auto v = view(20, 0, 0, 0, 3);
  EXPECT_EQ(scaled(*c, v), 2);  // ceil(3 / 2), from zero at once
  v.deployments[0].model = "big";
  auto c2 = ig::control::make_controller("skyserve", {{"target_qps_per_replica", 2}, {"target_qps_per_replica@big", 0.5}}, 1);
  EXPECT_EQ(scaled(*c2, v), 6);  // ceil(3 / 0.5)
  EXPECT_THROW(ig::control::make_controller("skyserve", {{"target_qps_per_replica@big", 0}}, 1), ig::core::InputError);
  EXPECT_THROW(ig::control::make_controller("skyserve", {{"nothing@big", 1}}, 1), ig::core::InputError);
}

// infergrid: replicas for the forecast's p90 at the cold-start horizon, at target_utilization
// of each replica's sustained rate; up at once, down after the delay, one a minute.
TEST(Control, InferGridHoldsCapacityForTheForecastAtItsColdStart) {
  auto c = ig::control::make_controller("infergrid", {{"target_utilization", 0.7}, {"downscale_delay_s", 600}, {"downscale_margin", 0.2}}, 1);
  auto at = [](double t, double qps, int ready, int waiting = 0) {
    auto v = view(t, ready, waiting, 0.2, qps);
    v.deployments[0].capacity_rps = 5;
    v.deployments[0].max_replicas = 20;
    return v;
  };
  // Steady 14 req/s, 5 per replica at 0.7: ceil(14 / 3.5) = 4 replicas.
  int got = -1;
  for (int k = 1; k <= 30; ++k) {
    const int s = scaled(*c, at(10.0 * k, 14, 4));
    if (s >= 0) got = s;
  }
  EXPECT_EQ(got, -1);  // 4 held: nothing to do
  // A ramp of +0.1 req/s each 10 s: the target leads the load by the cold start (120 s + a period):
  // at every step it holds what the rate 130 s later needs (and at most two replicas more).
  auto r = ig::control::make_controller("infergrid", {{"target_utilization", 0.7}, {"downscale_delay_s", 600}, {"downscale_margin", 0.2}}, 1);
  int ready = 1;
  for (int k = 1; k <= 200; ++k) {
    const double qps = 2 + 0.1 * k;
    const int s = scaled(*r, at(10.0 * k, qps, ready));
    if (s > ready) ready = s;
    if (k > 60) {
      // (the trend estimate converges to the ramp's: within 2% of the rate 130 s later)
      const int need_later = static_cast<int>(std::ceil(0.98 * (2 + 0.1 * (k + 13)) / 3.5));
      EXPECT_GE(ready, need_later) << "step " << k;
      EXPECT_LE(ready, need_later + 2) << "step " << k;
    }
  }
  // Load falls to 3.5 req/s: held for downscale_delay_s (600 s), then one replica a minute.
  auto d = ig::control::make_controller("infergrid", {{"target_utilization", 0.7}, {"downscale_delay_s", 600}, {"downscale_margin", 0.2}}, 1);
  for (int k = 1; k <= 30; ++k) scaled(*d, at(10.0 * k, 14, 4));
  std::vector<int> downs;
  for (int k = 31; k <= 120; ++k) {
    const int s = scaled(*d, at(10.0 * k, 3.5, 4));
    if (s >= 0) downs.push_back(k);
  }
  ASSERT_GE(downs.size(), 2u);
  EXPECT_GE((downs[0] - 30) * 10, 600);
  EXPECT_EQ(downs[1] - downs[0], 6);  // a minute later
}

TEST(Control, InferGridShedsBatchWhileShortOfCapacityNeverCritical) {
  auto c = ig::control::make_controller("infergrid", {{"target_utilization", 0.7}, {"downscale_delay_s", 600}, {"downscale_margin", 0.2}}, 1);
  auto v = view(10, 2, 50, 0.5, 30);
  v.deployments[0].capacity_rps = 5;
  Decisions d;
  c->decide(v, d);
  ASSERT_EQ(d.scale.size(), 1u);
  EXPECT_EQ(d.scale[0].replicas, 8);  // wants ceil(30/3.5 + queue) = 10; the pool holds 8
  ASSERT_EQ(d.shed.size(), 1u);
  EXPECT_EQ(d.shed[0].priority, 2);  // batch, never critical
  EXPECT_DOUBLE_EQ(d.shed[0].level, 0.3);
  // Capacity ready and no queue: the shedding is lifted.
  auto v2 = view(20, 8, 0, 0.3, 20);
  v2.deployments[0].capacity_rps = 5;
  Decisions d2;
  c->decide(v2, d2);
  ASSERT_EQ(d2.shed.size(), 1u);
  EXPECT_EQ(d2.shed[0].level, 0);
  for (const auto& s : d.shed) EXPECT_NE(s.priority, 0);
}

// Power (docs/control.md "infergrid", power): a site drawing 95% of its budget is power-bound.
// Wanted: (30 req/s + 20 queued over the 130 s lead) / (5 x 0.95) = 6.35 -> 7 replicas of 4 ready,
// nothing starting: short where it cannot grow, with a queue. Interactive is shed at the level
// that holds the queue to 0.5 s of its capacity: (40 running + 20 req/s x 0.5 s) / (4 x 256 slots),
// batch at shed_batch_at; critical never. It stays shed for shed_hold_s after, and a site whose
// budget was cut (20 kW, then 10) keeps its width when the load falls, until the budget is back.
TEST(Control, InferGridAtAPowerBoundSiteKeepsItsWidthAndShedsInteractiveNeverCritical) {
  auto c = ig::control::make_controller("infergrid", {{"downscale_delay_s", 20}}, 1);
  auto bound = [](double t, int waiting, double qps, double power_kw, double budget_kw = 10) {
    auto v = view(t, 4, waiting, 0.5, qps);
    v.sites[0].budget_kw = budget_kw;
    v.sites[0].power_kw = power_kw;
    auto& d = v.deployments[0];
    d.capacity_rps = 5;
    d.running = 40;
    d.max_num_seqs = 256;
    return v;
  };
  Decisions d0;
  c->decide(bound(0, 0, 30, 9.5, 20), d0);  // before the cut: not power-bound, nothing shed
  EXPECT_TRUE(d0.shed.empty());
  Decisions d;
  c->decide(bound(10, 20, 30, 9.5), d);
  ASSERT_EQ(d.scale.size(), 1u);
  EXPECT_EQ(d.scale[0].replicas, 7);  // asked for; the host starts what the budget allows
  ASSERT_EQ(d.shed.size(), 2u);
  EXPECT_EQ(d.shed[0].priority, 2);
  EXPECT_DOUBLE_EQ(d.shed[0].level, 0.3);
  EXPECT_EQ(d.shed[1].priority, 1);
  EXPECT_DOUBLE_EQ(d.shed[1].level, 50.0 / 1024);
  // The queue is gone, the load is low, the budget still cut: interactive stays shed for the 60 s
  // hold, then is lifted; no replica is drained during the emergency.
  int lifted_at = -1;
  for (int t = 20; t <= 120; t += 10) {
    Decisions e;
    c->decide(bound(t, 0, 2, 9.5), e);
    for (const auto& sc : e.scale) EXPECT_GE(sc.replicas, 4) << t;  // the last 30 s may still ask for more
    for (const auto& s : e.shed) {
      EXPECT_NE(s.priority, 0);
      if (s.priority == 1 && s.level == 0) lifted_at = t;
    }
  }
  EXPECT_EQ(lifted_at, 70);  // 60 s after the last overloaded view
  // The budget is back: the low load drains a replica after downscale_delay_s.
  int down = -1;
  for (int t = 130; t <= 200 && down < 0; t += 10) down = scaled(*c, bound(t, 0, 2, 3.0, 20));
  EXPECT_EQ(down, 3);
}

// The schedule (docs/control.md "infergrid", 7): each deployment's replicas schedule by priority
// within step_margin x the tightest TPOT SLO of its classes, sent once and again only when the
// target it runs under differs; step_margin 0 turns the target off (priority stays).
TEST(Control, InferGridSchedulesWithinTheTpotSloByPriority) {
  auto c = ig::control::make_controller("infergrid", {{"step_margin", 0.9}}, 1);
  auto v = view(10, 2, 0, 0.5, 5);
  v.deployments[0].slo_tpot_s = 0.08;
  Decisions d;
  c->decide(v, d);
  ASSERT_EQ(d.schedules.size(), 1u);
  EXPECT_EQ(d.schedules[0].deployment, v.deployments[0].id);
  EXPECT_NEAR(d.schedules[0].step_target_s, 0.072, 1e-12);
  EXPECT_TRUE(d.schedules[0].priority);
  v.deployments[0].step_target_s = 0.072;  // the host carried it out
  Decisions d2;
  c->decide(v, d2);
  EXPECT_TRUE(d2.schedules.empty());
  auto off = ig::control::make_controller("infergrid", {{"step_margin", 0}}, 1);
  Decisions d3;
  off->decide(v, d3);
  ASSERT_EQ(d3.schedules.size(), 1u);
  EXPECT_EQ(d3.schedules[0].step_target_s, 0);
  EXPECT_TRUE(d3.schedules[0].priority);
}

// Power where the fleet has slack (slack_cap < 1; off by default): a deployment whose forecast
// load is under slack_cap_below of its ready replicas is capped at slack_cap; a load past
// slack_uncap_above (or a queue) uncaps it at once; its own cap does not count as power-bound.
TEST(Control, InferGridCapsWhereItHasSlackAndUncapsUnderLoad) {
  auto c = ig::control::make_controller("infergrid", {{"slack_cap", 0.65}, {"min_replicas", 4}}, 1);
  auto at = [](double t, double qps, double cap, int waiting = 0) {
    auto v = view(t, 4, waiting, 0.3, qps);
    v.deployments[0].capacity_rps = 5;
    v.deployments[0].power_cap = cap;
    return v;
  };
  Decisions d;
  c->decide(at(10, 2, 1), d);  // 2 req/s against 4 replicas of 5: 10% loaded
  ASSERT_EQ(d.power_caps.size(), 1u);
  EXPECT_DOUBLE_EQ(d.power_caps[0].cap, 0.65);
  Decisions again;
  c->decide(at(20, 2, 0.65), again);  // capped: nothing new, nothing shed
  EXPECT_TRUE(again.power_caps.empty());
  EXPECT_TRUE(again.shed.empty());
  Decisions busy;
  c->decide(at(30, 2, 0.65, 40), busy);  // a queue forms: uncapped at once
  ASSERT_EQ(busy.power_caps.size(), 1u);
  EXPECT_DOUBLE_EQ(busy.power_caps[0].cap, 1.0);
  Decisions off;
  ig::control::make_controller("infergrid", {}, 1)->decide(at(10, 2, 1), off);
  EXPECT_TRUE(off.power_caps.empty());  // slack_cap 1: the default never caps
}

// infergrid-green: batch goes to the lowest-carbon site with headroom (nothing waiting, its
// requests within half its batches) whose expected TTFT is within 60 s; the
// other classes pick by the one cost; without carbon figures, or with every green site too slow,
// batch picks by the one cost too.
TEST(SiteRouter, InferGridGreenSendsBatchToTheCleanestSiteThatCanTakeIt) {
  using ig::control::SiteView;
  std::vector<SiteView> v(3);
  // Near and coal-fired; far and hydro; farther and windy, but with 400 requests queued per
  // replica at 4 req/s (100 s ahead).
  v[0] = {0, 10, 0, 0, 2, 0.1, 0, 4, 8, 10000, 700};
  v[1] = {1, 120, 0, 0, 2, 0.1, 0, 4, 8, 10000, 30};
  v[2] = {2, 200, 800, 800, 2, 0.1, 0, 4, 8, 10000, 10};
  auto r = ig::control::make_site_router("infergrid-green", 1);
  const ig::control::GeoRequest batch{1, 2000, 2, 7}, chat{2, 2000, 1, 8}, critical{3, 2000, 0, 9};
  EXPECT_EQ(*r->pick(batch, v), 1u);  // 10 g cheaper at site 2, but 100 s of queue there
  EXPECT_EQ(*r->pick(chat, v), 0u);
  EXPECT_EQ(*r->pick(critical, v), 0u);
  v[2].waiting = v[2].outstanding = 0;  // the windy site's queue drains
  EXPECT_EQ(*r->pick(batch, v), 2u);
  v[2].outstanding = 8;  // nothing waits, but its batches are half full (2 x 8 slots): no headroom
  EXPECT_EQ(*r->pick(batch, v), 1u);
  v[2].outstanding = 0;
  for (auto& s : v) s.carbon_g_per_kwh = 0;  // the gateway: no carbon figures
  EXPECT_EQ(*r->pick(batch, v), 0u);
  v[1].carbon_g_per_kwh = 30;
  v[1].waiting = v[1].outstanding = 600;  // 150 s ahead: too slow even for batch
  EXPECT_EQ(*r->pick(batch, v), 0u);
}
