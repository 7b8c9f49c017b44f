// The baseline controllers on hand-worked views: what each decides, and when.
#include <gtest/gtest.h>

#include "control/fleet.hpp"
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

TEST(Control, ReactiveFollowsTheHpaRule) {
  auto c = ig::control::make_controller("reactive", {}, 1);
  // 2 replicas, 20 waiting (10 each against a target of 5): ceil(2 x 10/5) = 4.
  EXPECT_EQ(scaled(*c, view(15, 2, 20, 0.1)), 4);
  // Within the 10% tolerance nothing changes: 4 replicas, 21 waiting = 5.25 each.
  auto c2 = ig::control::make_controller("reactive", {}, 1);
  EXPECT_EQ(scaled(*c2, view(15, 4, 21, 0.1)), -1);
  // KV usage drives it too: 0.96 / 0.8 = 1.2 -> ceil(4 x 1.2) = 5.
  auto c3 = ig::control::make_controller("reactive", {}, 1);
  EXPECT_EQ(scaled(*c3, view(15, 4, 0, 0.96)), 5);
  // Never past the pool.
  auto c4 = ig::control::make_controller("reactive", {}, 1);
  EXPECT_EQ(scaled(*c4, view(15, 4, 400, 0.1)), 8);
}

TEST(Control, ReactiveHoldsScaleDownForItsWindow) {
  auto c = ig::control::make_controller("reactive", {}, 1);
  EXPECT_EQ(scaled(*c, view(15, 4, 40, 0.5)), 8);
  // Idle from t = 30: the desire is 1 replica (kv 0.1 / 0.8 of 8 -> 1), but the highest desire of
  // the last 300 s (8) holds the fleet until t = 315.
  for (double t = 30; t < 315; t += 15) EXPECT_EQ(scaled(*c, view(t, 8, 0, 0.1)), -1) << t;
  EXPECT_EQ(scaled(*c, view(330, 8, 0, 0.1)), 1);
}

TEST(Control, ReactiveCountsStartingReplicas) {
  auto c = ig::control::make_controller("reactive", {}, 1);
  // 2 ready want 4; 2 more are already starting: nothing asked twice.
  EXPECT_EQ(scaled(*c, view(15, 2, 20, 0.1, 0, 2)), -1);
}

TEST(Control, SkyServeWaitsForItsDelays) {
  auto c = ig::control::make_controller("skyserve", {{"target_qps_per_replica", 2}}, 1);
  // 10 QPS at 2 per replica: 5 replicas, once the target has held for the upscale delay (300 s
  // = 15 periods of 20 s).
  for (int k = 1; k < 15; ++k) EXPECT_EQ(scaled(*c, view(20.0 * k, 2, 0, 0, 10)), -1) << k;
  EXPECT_EQ(scaled(*c, view(300, 2, 0, 0, 10)), 5);
  // Down to 1 after 1200 s (60 periods) below.
  for (int k = 1; k < 60; ++k) EXPECT_EQ(scaled(*c, view(300 + 20.0 * k, 5, 0, 0, 0.5)), -1) << k;
  EXPECT_EQ(scaled(*c, view(1500, 5, 0, 0, 0.5)), 1);
}

TEST(Control, DynamoStepsOneReplicaOnPredictedLoad) {
  auto c = ig::control::make_controller("dynamo", {}, 1);
  // The moving average of the last 3 intervals: 0.8, 0.95, 0.98 -> 0.91 > 0.9: one up.
  EXPECT_EQ(scaled(*c, view(10, 3, 0, 0.8)), -1);
  EXPECT_EQ(scaled(*c, view(20, 3, 0, 0.95)), -1);
  EXPECT_EQ(scaled(*c, view(30, 3, 0, 0.98)), 4);
  // It waits while a replica starts.
  EXPECT_EQ(scaled(*c, view(40, 3, 0, 0.99, 0, 1)), -1);
  // Light load (KV 0.2, no queue): one down at a time, never below one.
  auto d = ig::control::make_controller("dynamo", {}, 1);
  EXPECT_EQ(scaled(*d, view(10, 2, 0, 0.2)), 1);
  auto e = ig::control::make_controller("dynamo", {}, 1);
  EXPECT_EQ(scaled(*e, view(10, 1, 0, 0.0)), -1);
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
    EXPECT_NE(std::string(e.what()).find("static, reactive, skyserve, dynamo"), std::string::npos) << e.what();
  }
  try {
    ig::control::make_controller("skyserve", {{"target_qps", 3}}, 1);
    FAIL();
  } catch (const ig::core::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("target_qps_per_replica"), std::string::npos) << e.what();
  }
}
