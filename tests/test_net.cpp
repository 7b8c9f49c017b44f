// Flow-level bandwidth sharing: hand-worked max-min cases, strict priority, bounds, and
// incremental updates against full re-solves.
#include <gtest/gtest.h>

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
