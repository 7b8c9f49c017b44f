// Flow-level bandwidth sharing: hand-worked max-min cases, strict priority, bounds, and
// incremental updates against full re-solves.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/rng.hpp"
#include "net/flow_network.hpp"

using infergrid::net::FlowNetwork;

TEST(FlowNetwork, OneLinkSharedEqually) {
  FlowNetwork n;
  const int l = n.add_link(10);
  const int a = n.start_flow({l}), b = n.start_flow({l});
  n.update();
  EXPECT_DOUBLE_EQ(n.rate(a), 5);
  EXPECT_DOUBLE_EQ(n.rate(b), 5);
  n.end_flow(a);
  n.update();
  EXPECT_DOUBLE_EQ(n.rate(b), 10);
}

// Parking lot: link 1 (10) carries f0 and f1, link 2 (4) carries f0 and f2. Link 2 is the
// bottleneck: f0 = f2 = 2; f1 takes the rest of link 1: 8.
TEST(FlowNetwork, ParkingLotByHand) {
  FlowNetwork n;
  const int l1 = n.add_link(10), l2 = n.add_link(4);
  const int f0 = n.start_flow({l1, l2}), f1 = n.start_flow({l1}), f2 = n.start_flow({l2});
  n.update();
  EXPECT_DOUBLE_EQ(n.rate(f0), 2);
  EXPECT_DOUBLE_EQ(n.rate(f2), 2);
  EXPECT_DOUBLE_EQ(n.rate(f1), 8);
  EXPECT_DOUBLE_EQ(n.load(l1), 10);
}

// Class 0 is served first (bounded at 6 here); class 1 shares what is left max-min fairly.
TEST(FlowNetwork, StrictPriorityBetweenClassesAndBounds) {
  FlowNetwork n;
  const int l = n.add_link(10);
  const int hi = n.start_flow({l}, 0, 6);
  const int lo1 = n.start_flow({l}, 1), lo2 = n.start_flow({l}, 1, 0.5);
  n.update();
  EXPECT_DOUBLE_EQ(n.rate(hi), 6);
  EXPECT_DOUBLE_EQ(n.rate(lo2), 0.5);
  EXPECT_DOUBLE_EQ(n.rate(lo1), 3.5);
  // A second critical flow takes its share from class 1, never the reverse.
  const int hi2 = n.start_flow({l}, 0);
  n.update();
  EXPECT_DOUBLE_EQ(n.rate(hi), 5);
  EXPECT_DOUBLE_EQ(n.rate(hi2), 5);
  EXPECT_DOUBLE_EQ(n.rate(lo1), 0);
  // A cut stops everything on the link; restoring it restores the rates.
  n.set_capacity(l, 0);
  n.update();
  EXPECT_DOUBLE_EQ(n.rate(hi), 0);
  n.set_capacity(l, 20);
  n.update();
  EXPECT_DOUBLE_EQ(n.rate(hi), 6);
  EXPECT_DOUBLE_EQ(n.rate(hi2), 14);
}

// Random churn: incremental updates give what a full re-solve gives, touching fewer flows.
TEST(FlowNetwork, IncrementalEqualsFullResolve) {
  infergrid::core::Rng rng(3, "net");
  FlowNetwork inc, full;
  const int links = 200;
  for (int i = 0; i < links; ++i) {
    const double c = 1 + static_cast<double>(rng.below(100));
    inc.add_link(c);
    full.add_link(c);
  }
  std::vector<int> alive;
  std::size_t touched = 0, steps = 0;
  for (int step = 0; step < 3000; ++step) {
    if (alive.size() > 400 || (!alive.empty() && rng.below(3) == 0)) {
      const std::size_t k = rng.below(alive.size());
      inc.end_flow(alive[k]);
      full.end_flow(alive[k]);
      alive.erase(alive.begin() + static_cast<long>(k));
    } else {
      // Routes stay within one of 20 regions of 10 links, as DCI routes do.
      const int region = static_cast<int>(rng.below(20)) * 10;
      std::vector<int> route;
      for (int h = 0; h < 1 + static_cast<int>(rng.below(3)); ++h) route.push_back(region + static_cast<int>(rng.below(10)));
      std::sort(route.begin(), route.end());
      route.erase(std::unique(route.begin(), route.end()), route.end());
      const int cls = static_cast<int>(rng.below(3));
      const double bound = rng.below(4) == 0 ? 1 + static_cast<double>(rng.below(20)) : FlowNetwork::kUnbounded;
      const int a = inc.start_flow(route, cls, bound), b = full.start_flow(route, cls, bound);
      ASSERT_EQ(a, b);
      alive.push_back(a);
    }
    touched += inc.update();
    ++steps;
    full.update_all();
    for (int f : alive) ASSERT_NEAR(inc.rate(f), full.rate(f), 1e-9) << "step " << step;
  }
  for (int l = 0; l < links; ++l) EXPECT_LE(inc.load(l), inc.capacity(l) * (1 + 1e-9) + 1e-9);
  EXPECT_LT(touched, steps * inc.active_flows() / 4);  // far fewer than re-rating everything
}

// ---- latency -------------------------------------------------------------------------------

#include <fstream>

#include "core/error.hpp"
#include "core/geo.hpp"
#include "core/paths.hpp"
#include "net/fiber.hpp"
#include "net/latency.hpp"

using namespace infergrid;

TEST(Geo, GreatCircleByHand) {
  // One degree of the equator: 6371 km x pi / 180.
  EXPECT_NEAR(core::great_circle_km({0, 0}, {0, 1}), 111.195, 0.001);
  EXPECT_NEAR(core::great_circle_km({90, 0}, {-90, 0}), 6371 * 3.14159265358979323846, 1e-6);
  core::LatLon p;
  EXPECT_TRUE(core::parse_latlon("35.68,139.69", p));
  EXPECT_FALSE(core::parse_latlon("95,0", p));
  EXPECT_FALSE(core::parse_latlon("tokyo", p));
}

TEST(Latency, ModelAndFit) {
  const net::RttModel m = net::RttModel::calibrated();
  EXPECT_DOUBLE_EQ(m.rtt_ms({10, 10}, {10, 10}), m.fixed_ms);
  // 1000 km of great circle: fixed + 2 x 5 us/km x factor x 1000 km.
  const core::LatLon a{0, 0}, b{0, 1000 / 111.19492664455873};
  EXPECT_NEAR(m.rtt_ms(a, b), m.fixed_ms + 10 * m.route_factor, 1e-6);
  // The fit recovers a known law, and a far-off outlier does not drag it.
  std::vector<net::RttSample> s;
  for (int km = 100; km <= 10000; km += 300) s.push_back({"a", "b", double(km), 4 + 0.015 * km});
  s.push_back({"x", "y", 300, 175});
  const auto f = net::fit_rtt(s);
  EXPECT_NEAR(f.fixed_ms, 4, 0.1);  // least squares would say 8.9
  EXPECT_NEAR(f.route_factor, 1.5, 0.01);
}

// The built-in model against the public measurements it was fitted to: median error as measured
// (13.0%, `infergrid geo calibrate`), within a margin.
TEST(Latency, CalibratedAgainstWonderProxyMeasurements) {
  const auto samples = net::read_rtt_matrix(core::data_dir() + "/net/wonderproxy_2011_rtt.csv");
  ASSERT_EQ(samples.size(), 72u);
  const auto fit = net::fit_rtt(samples);
  const auto m = net::RttModel::calibrated();
  EXPECT_NEAR(fit.route_factor, m.route_factor, 0.001);
  EXPECT_NEAR(fit.fixed_ms, m.fixed_ms, 0.01);
  std::vector<double> err;
  for (const auto& x : samples) {
    const double model = m.fixed_ms + 2 * net::RttModel::kFiberMsPerKm * m.route_factor * x.km;
    err.push_back(std::fabs(model - x.measured_ms) / x.measured_ms);
  }
  std::sort(err.begin(), err.end());
  EXPECT_LT(err[err.size() / 2], 0.15);
}

// The fiber model's error on the third of the shipped cloud measurements it was not fitted to:
// the goal of issue 14 is a median of at most 8% and a p90 of at most 20% (measured 5.0% / 19.3%),
// against the single-factor model's 15.0% / 36.8% on the same pairs.
TEST(Latency, FiberModelHeldOutErrorOnShippedMeasurements) {
  const auto pairs = net::shipped_rtt_pairs();
  ASSERT_GT(pairs.size(), 2000u);
  const auto& m = net::FiberModel::builtin();
  const auto held = net::rtt_error(m, pairs, true);
  EXPECT_GT(held.pairs, 600u);
  EXPECT_LE(held.median, 0.08);
  EXPECT_LE(held.p90, 0.20);
  const auto single = net::RttModel::calibrated();
  std::vector<double> e;
  for (const auto& p : pairs)
    if (p.held_out) e.push_back(std::fabs(single.rtt_ms(p.pa, p.pb) - p.measured_ms) / p.measured_ms);
  std::sort(e.begin(), e.end());
  EXPECT_GT(e[e.size() / 2], 2 * held.median);
}

// Hand-worked: two hubs joined by a 1,000 km submarine route; endpoints at the hubs.
TEST(Latency, FiberModelFollowsItsRoutes) {
  const std::string path = testing::TempDir() + "/fiber.yaml";
  const double lon = 1000 / 111.19492664455873;  // 1,000 km along the equator
  std::ofstream(path) << "hubs:\n  - {name: A, lat: 0, lon: 0}\n  - {name: B, lat: 0, lon: " << lon
                      << "}\n  - {name: C, lat: 0, lon: 40}\nroutes:\n  - [A, B, s]\n  - [B, C, t]\n";
  net::FiberParams p;
  p.terrestrial_factor = 1.5;
  p.submarine_factor = 1.2;
  p.hop_ms = 2;
  p.direct_fixed_ms = 10;
  p.hub_fixed_ms = 3;
  p.direct_max_km = 500;  // 1,000 km apart: no direct path
  const auto m = net::FiberModel::load(path, p);
  // hub fixed + 1,000 km x 1.2 x 0.01 ms/km + one hop
  EXPECT_NEAR(m.rtt_ms({0, 0}, {0, lon}), 3 + 12 + 2, 1e-3);  // the file holds lon to 6 digits
  // A to C: two routes, two hops.
  const double bc = core::great_circle_km({0, lon}, {0, 40});
  EXPECT_NEAR(m.rtt_ms({0, 0}, {0, 40}), 3 + 12 + 2 + bc * 1.5 * 0.01 + 2, 1e-3);
  // Near points go direct over land: 100 km.
  const double near = 100 / 111.19492664455873;
  EXPECT_NEAR(m.rtt_ms({0, 20}, {0, 20 + near}), std::min(10 + 1.5, 1e9), 1e-6);
  // Errors name the file, the line and the field.
  std::ofstream(path) << "hubs:\n  - {name: A, lat: 0, lon: 0}\nroutes:\n  - [A, Z, s]\n";
  try {
    (void)net::FiberModel::load(path, p);
    ADD_FAILURE() << "expected an InputError";
  } catch (const core::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("fiber.yaml:4"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("unknown hub 'Z'"), std::string::npos) << e.what();
  }
}

TEST(Latency, BadMatrixNamesLineAndField) {
  const std::string path = testing::TempDir() + "/rtt.csv";
  std::ofstream(path) << "city,lat,lon,A,B\nA,0,0,,12\nB,0,1,x,\n";
  try {
    net::read_rtt_matrix(path);
    FAIL();
  } catch (const core::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("rtt.csv:3: field 'A'"), std::string::npos) << e.what();
  }
}
