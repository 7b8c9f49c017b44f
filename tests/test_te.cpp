// Traffic engineering: hand-worked cases for every objective and both solvers, random graphs
// (fast against the LP), incremental re-allocation, and bad input.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <fstream>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "te/solver.hpp"

using namespace infergrid;
using namespace infergrid::te;

namespace {

// Directed graph from "src dst capacity" triples, nodes 0..n-1.
Graph graph(int n, const std::vector<std::tuple<int, int, double>>& links) {
  std::string j = "{\"directed\": true, \"nodes\": [";
  for (int i = 0; i < n; ++i) j += (i ? "," : "") + std::string("{\"id\": ") + std::to_string(i) + "}";
  j += "], \"links\": [";
  for (std::size_t i = 0; i < links.size(); ++i) {
    const auto& [s, d, c] = links[i];
    j += (i ? "," : "") + std::string("{\"source\": ") + std::to_string(s) + ", \"target\": " + std::to_string(d) +
         ", \"capacity\": " + std::to_string(c) + "}";
  }
  return parse_node_link_json(j + "]}", "test.json");
}

Problem problem(const Graph& g, std::vector<Demand> demands, int k = 4) {
  Problem p;
  p.graph = &g;
  p.demands = std::move(demands);
  p.paths = compute_paths(g, p.demands, k, true);
  return p;
}

double served(const Allocation& a, std::size_t d) {
  double s = 0;
  for (double x : a.flow[d]) s += x;
  return s;
}

const Objective kAll[] = {Objective::kMlu, Objective::kMaxFlow, Objective::kMaxMin};

Allocation solve(const Problem& p, Objective o, bool fast) { return fast ? solve_fast(p, o) : solve_lp(p, o); }

// A random strongly connected graph: a ring plus 2n random chords, both directions.
Graph random_graph(core::Rng& rng, int n) {
  std::vector<std::tuple<int, int, double>> links;
  for (int i = 0; i < n; ++i) {
    const double c = 50 + static_cast<double>(rng.below(200));
    links.emplace_back(i, (i + 1) % n, c);
    links.emplace_back((i + 1) % n, i, c);
  }
  for (int e = 0; e < 2 * n; ++e) {
    const int a = static_cast<int>(rng.below(static_cast<std::uint64_t>(n)));
    const int b = static_cast<int>(rng.below(static_cast<std::uint64_t>(n)));
    if (a == b) continue;
    const double c = 20 + static_cast<double>(rng.below(300));
    links.emplace_back(a, b, c);
    links.emplace_back(b, a, c);
  }
  return graph(n, links);
}

}  // namespace

// The triangle in bytes/s (capacities 5e10): the same answers, scaled. Unscaled, CLP's
// tolerances returned zero flows for it.
TEST(Te, LargeUnitsGiveTheSameAnswerScaled) {
  const Graph g = graph(3, {{0, 1, 1e11}, {1, 2, 1e11}, {0, 2, 5e10}});
  for (bool fast : {false, true}) {
    const Problem p = problem(g, {{0, 2, 2e11, 0}});
    EXPECT_NEAR(solve(p, Objective::kMlu, fast).value, 20.0 / 15, 1e-6) << fast;
    EXPECT_NEAR(solve(p, Objective::kMaxFlow, fast).value, 1.5e11, 1.5e11 * 1e-6) << fast;
    const Allocation mm = solve(p, Objective::kMaxMin, fast);
    EXPECT_NEAR(served(mm, 0), 1.5e11, 1.5e11 * 1e-6) << fast;
    EXPECT_NEAR(mm.link_load[2], 5e10, 5e10 * 1e-6) << fast;
  }
}

// Triangle: A->C direct (5) or A->B->C (10, 10); 12 units from A to C.
// MLU: x1/5 = x2/10 = U, x1 + x2 = 12, so U = 0.8. Everything fits: max-flow = max-min = 12.
TEST(Te, TriangleByHand) {
  const Graph g = graph(3, {{0, 1, 10}, {1, 2, 10}, {0, 2, 5}});
  for (bool fast : {false, true}) {
    const Problem p = problem(g, {{0, 2, 12, 0}});
    ASSERT_EQ(p.paths[0].size(), 2u);
    EXPECT_NEAR(solve(p, Objective::kMlu, fast).value, 0.8, 1e-9) << fast;
    EXPECT_NEAR(solve(p, Objective::kMaxFlow, fast).value, 12, 1e-9) << fast;
    EXPECT_NEAR(solve(p, Objective::kMaxMin, fast).value, 12, 1e-9) << fast;
    // 20 units: MLU 20/15; only 15 fit.
    const Problem q = problem(g, {{0, 2, 20, 0}});
    EXPECT_NEAR(solve(q, Objective::kMlu, fast).value, 20.0 / 15, 1e-9) << fast;
    EXPECT_NEAR(solve(q, Objective::kMaxFlow, fast).value, 15, 1e-9) << fast;
    EXPECT_NEAR(solve(q, Objective::kMaxMin, fast).value, 15, 1e-9) << fast;
  }
}

// Diamond S->A->T (10, 4) and S->B->T (6, 8), 15 units S->T. Path bottlenecks 4 and 6:
// MLU: x1 / 4 = x2 / 6 = U with x1 + x2 = 15, so U = 1.5; max-flow 4 + 6 = 10.
TEST(Te, DiamondByHand) {
  const Graph g = graph(4, {{0, 1, 10}, {1, 3, 4}, {0, 2, 6}, {2, 3, 8}});
  for (bool fast : {false, true}) {
    const Problem p = problem(g, {{0, 3, 15, 0}});
    const Allocation m = solve(p, Objective::kMlu, fast);
    EXPECT_NEAR(m.value, 1.5, 1e-9);
    EXPECT_NEAR(m.mlu(g), 1.5, 1e-9);
    EXPECT_NEAR(solve(p, Objective::kMaxFlow, fast).value, 10, 1e-9);
    const Allocation mm = solve(p, Objective::kMaxMin, fast);
    EXPECT_NEAR(mm.value, 10, 1e-9);
    for (std::size_t l = 0; l < g.links.size(); ++l) EXPECT_LE(mm.link_load[l], g.links[l].capacity + 1e-9);
  }
}

// One 10-unit bottleneck. Class 0 (7) is served before class 1 (8): 7 and 3. Within a class,
// fairness is in the fraction served: 4 and 16 in one class get 2 and 8 (t = 0.5). A 50%
// guarantee for class 1 serves 4 of it before class 0 takes the remaining 6.
TEST(Te, ClassesOnOneBottleneckByHand) {
  const Graph g = graph(2, {{0, 1, 10}});
  for (bool fast : {false, true}) {
    const Problem tiers = problem(g, {{0, 1, 7, 0}, {0, 1, 8, 1}});
    const Allocation a = solve(tiers, Objective::kMaxMin, fast);
    EXPECT_NEAR(served(a, 0), 7, 1e-9) << fast;
    EXPECT_NEAR(served(a, 1), 3, 1e-9) << fast;
    const Problem fair = problem(g, {{0, 1, 4, 0}, {0, 1, 16, 0}});
    const Allocation b = solve(fair, Objective::kMaxMin, fast);
    EXPECT_NEAR(served(b, 0), 2, 1e-9) << fast;
    EXPECT_NEAR(served(b, 1), 8, 1e-9) << fast;
    Problem guaranteed = tiers;
    guaranteed.class_guarantee = {{1, 0.5}};
    const Allocation c = solve(guaranteed, Objective::kMaxMin, fast);
    EXPECT_NEAR(served(c, 1), 4, 1e-9) << fast;
    EXPECT_NEAR(served(c, 0), 6, 1e-9) << fast;
    // Max-flow ignores classes; MLU routes everything.
    EXPECT_NEAR(solve(tiers, Objective::kMaxFlow, fast).value, 10, 1e-9);
    EXPECT_NEAR(solve(tiers, Objective::kMlu, fast).value, 1.5, 1e-9);
  }
}

// Random strongly connected graphs with gravity demands: the fast allocator within 1% of the
// LP (MLU and max-flow are the same optimum; max-min: the served fraction of the worst demand
// of each class, the first criterion of the lexicographic objective).
TEST(Te, FastWithinOnePercentOfLpOnRandomGraphs) {
  core::Rng rng(42, "te-random");
  for (int trial = 0; trial < 12; ++trial) {
    const int n = 8 + static_cast<int>(rng.below(10));
    const Graph g = random_graph(rng, n);
    auto demands = gravity_demands(g, 200.0 * n * (1 + static_cast<double>(trial % 3)));
    for (auto& d : demands) d.cls = static_cast<int>(rng.below(2));
    Problem p;
    p.graph = &g;
    p.demands = demands;
    p.paths = compute_paths(g, p.demands, 3);
    for (Objective o : kAll) {
      const Allocation lp = solve_lp(p, o), fast = solve_fast(p, o);
      if (o != Objective::kMlu) {
        for (std::size_t l = 0; l < g.links.size(); ++l)
          ASSERT_LE(fast.link_load[l], g.links[l].capacity * (1 + 1e-7) + 1e-7);
      }
      if (o != Objective::kMaxMin) {
        EXPECT_NEAR(fast.value / lp.value, 1.0, 0.01) << objective_name(o) << " trial " << trial;
        continue;
      }
      for (int cls : {0, 1}) {
        double worst_lp = 1, worst_fast = 1;
        for (std::size_t d = 0; d < p.demands.size(); ++d)
          if (p.demands[d].cls == cls) {
            worst_lp = std::min(worst_lp, lp.served_fraction(d, p));
            worst_fast = std::min(worst_fast, fast.served_fraction(d, p));
          }
        EXPECT_NEAR(worst_fast, worst_lp, 0.01) << "class " << cls << " trial " << trial;
      }
    }
  }
}

// Max-min on a heavily loaded random graph (links far over capacity, so the level duals are small
// against the volumes): the LP and fast give every demand the same served fraction (the max-min
// fair vector is unique), and both are Pareto-efficient: a demand served short of its volume has a
// saturated link on each of its paths. Maximizing t itself instead of the level's throughput, the
// LP froze demands that could still rise (Kdl: 6,112 of 20,000).
TEST(Te, MaxMinUniqueAndParetoEfficientUnderHeavyLoad) {
  core::Rng rng(11, "te-max-min");
  const Graph g = random_graph(rng, 24);
  Problem p;
  p.graph = &g;
  p.demands = gravity_demands(g, 2e6);
  p.paths = compute_paths(g, p.demands, 3);
  const Allocation lp = solve_lp(p, Objective::kMaxMin), fast = solve_fast(p, Objective::kMaxMin);
  for (const Allocation* a : {&lp, &fast}) {
    const std::string who = a == &lp ? "lp" : "fast";
    std::size_t short_served = 0, could_rise = 0;
    for (std::size_t d = 0; d < p.demands.size(); ++d) {
      if (a->served_fraction(d, p) >= 1 - 1e-6) continue;
      ++short_served;
      for (const Path& path : p.paths[d]) {
        double most = 0;
        for (int l : path) most = std::max(most, a->link_load[static_cast<std::size_t>(l)] / g.links[static_cast<std::size_t>(l)].capacity);
        if (most < 1 - 1e-6) {
          ++could_rise;
          break;
        }
      }
    }
    EXPECT_GT(short_served, p.demands.size() / 2) << who;
    EXPECT_EQ(could_rise, 0u) << who;
  }
  std::size_t differ = 0;
  for (std::size_t d = 0; d < p.demands.size(); ++d)
    differ += std::fabs(fast.served_fraction(d, p) - lp.served_fraction(d, p)) > 1e-6;
  EXPECT_EQ(differ, 0u) << "of " << p.demands.size();
}

// The potential method on the hand-worked cases: certified, within its tolerance of the exact
// answer, and its bound on the right side of the optimum (a bound that crossed it would be a
// wrong certificate). Max-flow allocations fit the capacities.
TEST(Te, PotentialByHandWithinItsCertificate) {
  const Graph tri = graph(3, {{0, 1, 10}, {1, 2, 10}, {0, 2, 5}});
  const Graph dia = graph(4, {{0, 1, 10}, {1, 3, 4}, {0, 2, 6}, {2, 3, 8}});
  struct Case {
    const Graph* g;
    double volume;
    Objective o;
    double exact;
  };
  const int dst_of_tri = 2, dst_of_dia = 3;
  for (const Case& c : {Case{&tri, 12, Objective::kMlu, 0.8}, Case{&tri, 20, Objective::kMlu, 20.0 / 15},
                        Case{&tri, 20, Objective::kMaxFlow, 15}, Case{&dia, 15, Objective::kMlu, 1.5},
                        Case{&dia, 15, Objective::kMaxFlow, 10}}) {
    const Problem p = problem(*c.g, {{0, c.g == &tri ? dst_of_tri : dst_of_dia, c.volume, 0}});
    bool certified = false;
    const Allocation a = solve_potential(p, c.o, 1e-3, 1000, nullptr, &certified);
    const std::string what = fmt::format("{} of {} on {} nodes", objective_name(c.o), c.volume, c.g->nodes.size());
    EXPECT_TRUE(certified) << what;
    EXPECT_NEAR(a.value, c.exact, 1.001e-3 * c.exact) << what;
    if (c.o == Objective::kMlu) {
      EXPECT_LE(a.bound, c.exact * (1 + 1e-9)) << what;
      EXPECT_GE(a.value, c.exact * (1 - 1e-9)) << what;
    } else {
      EXPECT_GE(a.bound, c.exact * (1 - 1e-9)) << what;
      for (std::size_t l = 0; l < c.g->links.size(); ++l) EXPECT_LE(a.link_load[l], c.g->links[l].capacity * (1 + 1e-9));
    }
  }
}


// Large enough for solve_fast to take the potential (more than kSmallProblemColumns columns):
// within 1% of the LP, the certificate brackets the LP's optimum, and a warm start after a link
// failure certifies in fewer sweeps than a fresh solve, at the same objective within tolerance.
TEST(Te, PotentialOnLargerRandomGraphsWithinOnePercentAndWarmAfterFailure) {
  core::Rng rng(7, "te-potential");
  for (int trial = 0; trial < 3; ++trial) {
    const Graph g = random_graph(rng, 40 + 5 * trial);
    for (Objective o : {Objective::kMlu, Objective::kMaxFlow}) {
      Problem p;
      p.graph = &g;
      // Max-flow gets ten times the demand: links must bind for the objective to be a test.
      p.demands = gravity_demands(g, 3000.0 * (1 + trial) * (o == Objective::kMaxFlow ? 10 : 1));
      p.paths = compute_paths(g, p.demands, 4);
      std::size_t columns = 0;
      for (const auto& v : p.paths) columns += v.size();
      ASSERT_GE(columns, kSmallProblemColumns);
      const Allocation lp = solve_lp(p, o), fast = solve_fast(p, o);
      const std::string what = fmt::format("{} trial {}", objective_name(o), trial);
      EXPECT_EQ(fast.method, "fast") << what << " lp " << lp.value << " fast " << fast.value;  // certified, no fallback
      EXPECT_NEAR(fast.value / lp.value, 1.0, 0.01) << what;
      if (o == Objective::kMlu) {
        EXPECT_LE(fast.bound, lp.value * (1 + 1e-6)) << what;
        EXPECT_GE(fast.value, lp.value * (1 - 1e-6)) << what;
      } else {
        EXPECT_GE(fast.bound, lp.value * (1 - 1e-6)) << what;
        EXPECT_LE(fast.value, lp.value * (1 + 1e-6)) << what;
        for (std::size_t l = 0; l < g.links.size(); ++l) ASSERT_LE(fast.link_load[l], g.links[l].capacity * (1 + 1e-7));
      }
      // Fail the busiest link: its paths go, demands left without one get new ones.
      std::size_t busiest = 0;
      for (std::size_t l = 0; l < g.links.size(); ++l)
        if (fast.link_load[l] / g.links[l].capacity > fast.link_load[busiest] / g.links[busiest].capacity) busiest = l;
      Graph h = g;
      h.links[busiest].capacity = 0;
      Problem q = p;
      q.graph = &h;
      Allocation warm = fast;
      for (std::size_t d = 0; d < q.demands.size(); ++d) {
        std::vector<Path> kept;
        std::vector<double> flows;
        for (std::size_t k = 0; k < q.paths[d].size(); ++k)
          if (std::find(q.paths[d][k].begin(), q.paths[d][k].end(), static_cast<int>(busiest)) == q.paths[d][k].end()) {
            kept.push_back(q.paths[d][k]);
            flows.push_back(fast.flow[d][k]);
          }
        if (kept.empty()) {
          kept = k_shortest_paths(h, q.demands[d].src, q.demands[d].dst, 4);
          flows.assign(kept.size(), 0.0);
        }
        q.paths[d] = kept;
        warm.flow[d] = flows;
      }
      bool fresh_ok = false, warm_ok = false;
      const Allocation fresh = solve_potential(q, o, q.tolerance, 300, nullptr, &fresh_ok);
      const Allocation inc = solve_potential(q, o, q.tolerance, 300, &warm, &warm_ok);
      EXPECT_TRUE(fresh_ok && warm_ok) << what;
      EXPECT_LT(inc.iterations, fresh.iterations) << what;
      EXPECT_NEAR(inc.value / fresh.value, 1.0, 0.01) << what;
    }
  }
}

TEST(Te, IncrementalAfterLinkFailureMatchesFreshSolve) {
  const Graph g = graph(4, {{0, 1, 10}, {1, 3, 10}, {0, 2, 10}, {2, 3, 10}, {0, 3, 10}, {1, 0, 10}, {3, 1, 10},
                            {2, 0, 10}, {3, 2, 10}, {3, 0, 10}});
  Problem p = problem(g, {{0, 3, 24, 0}, {1, 3, 6, 0}});
  const Allocation before = solve_fast(p, Objective::kMlu);
  Graph h = g;
  h.links[static_cast<std::size_t>(g.link_between(0, 3))].capacity = 0;
  Problem q = p;
  q.graph = &h;
  q.paths = compute_paths(h, q.demands, 4, true);
  const Allocation fresh = solve_lp(q, Objective::kMlu);
  Allocation warm = before;
  warm.flow.assign(q.demands.size(), {});
  for (std::size_t d = 0; d < q.demands.size(); ++d) warm.flow[d].assign(q.paths[d].size(), 1.0);
  const Allocation inc = solve_fast(q, Objective::kMlu, &warm);
  EXPECT_NEAR(inc.value, fresh.value, 1e-9);
  EXPECT_GT(inc.value, before.value);
}

TEST(Te, GmlReaderKeepsLargestComponentAndCoordinates) {
  const std::string gml = R"(graph [
  node [ id 0 label "A" Latitude 40.0 Longitude -74.0 ]
  node [ id 1 label "B" Latitude 41.0 Longitude -87.0 ]
  node [ id 2 label "C" Latitude 34.0 Longitude -118.0 ]
  node [ id 7 label "Island" ]
  edge [ source 0 target 1 ]
  edge [ source 1 target 2 ]
  edge [ source 0 target 1 LinkLabel "parallel" ]
])";
  const Graph g = parse_gml(gml, "t.gml", 1000);
  ASSERT_EQ(g.nodes.size(), 3u);          // the island is dropped
  ASSERT_EQ(g.links.size(), 4u);          // undirected edges become two links
  EXPECT_EQ(g.links[static_cast<std::size_t>(g.link_between(0, 1))].capacity, 2000);  // parallel edges merge
  const double km = g.links[static_cast<std::size_t>(g.link_between(0, 1))].latency_ms / 0.005;
  EXPECT_NEAR(km, 1104, 2);  // (40 N, 74 W) to (41 N, 87 W) on the great circle
}

TEST(Te, BadInputNamesFileAndLine) {
  auto msg = [](auto f) -> std::string {
    try {
      f();
    } catch (const core::InputError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(msg([] { parse_gml("graph [\n node [ id 0 ]\n edge [ source 0 target 9 ]\n]", "x.gml"); })
                .find("x.gml:3: field 'target': unknown node 9"),
            std::string::npos);
  EXPECT_NE(msg([] { parse_gml("graph [\n node [ id 0 ]\n", "y.gml"); }).find("y.gml"), std::string::npos);
  EXPECT_NE(msg([] { parse_gml("graph [\n edge [ source 0 target 1 capacity -5 ]\n node [ id 0 ]\n node [ id 1 ]\n]", "z.gml"); })
                .find("z.gml:2: field 'capacity'"),
            std::string::npos);
  EXPECT_NE(msg([] { parse_node_link_json("{\"nodes\": [{\"id\": 0}], \"links\": [{\"source\": 0, \"target\": 0}]}", "j.json"); })
                .find("j.json: field 'links[0].capacity'"),
            std::string::npos);
  // fuzz_gml: ids beyond what a double holds as an integer were cast to int64 (UB, seeds id-overflow.gml, edge-overflow.gml).
  EXPECT_NE(msg([] { parse_gml("graph [\n node [ id 1e300 ]\n]", "big.gml"); })
                .find("big.gml:2: field 'id': expected an integer id of magnitude at most 2^53, found 1e+300"),
            std::string::npos);
  EXPECT_NE(msg([] { parse_gml("graph [\n node [ id 1 ]\n node [ id 2 ]\n edge [ source 1e300 target 2 ]\n]", "e.gml"); })
                .find("e.gml:4: field 'source': expected an integer id"),
            std::string::npos);
  EXPECT_NE(msg([] { parse_gml("graph [\n node [ id 1 ]\n node [ id 2 ]\n edge [ source 1 target \"2\" ]\n]", "s.gml"); })
                .find("s.gml:4: field 'target': expected an integer id, found \"2\""),
            std::string::npos);
  EXPECT_NE(msg([] { parse_gml("graph [\n node [ id 1.5 ]\n]", "f.gml"); }).find("f.gml:2: field 'id'"), std::string::npos);
  // A non-boolean 'directed' threw nlohmann's type_error past the reader (fuzz_nodelink seed directed-number.json).
  EXPECT_NE(msg([] { parse_node_link_json("{\"directed\": 1, \"nodes\": [], \"links\": []}", "d.json"); })
                .find("d.json: field 'directed': expected true or false"),
            std::string::npos);
  const Graph g = graph(3, {{0, 1, 10}, {1, 2, 10}, {2, 0, 10}});
  const std::string dir = testing::TempDir();
  const Graph ring = graph(6, {{0, 1, 1}, {1, 2, 1}, {2, 3, 1}, {3, 4, 1}, {4, 5, 1}, {5, 0, 1}});
  std::ofstream(dir + "/m.csv") << "0,1,2,3,4,5\n1,0,2,3,4\n";
  EXPECT_NE(msg([&] { read_demands(dir + "/m.csv", ring); }).find("m.csv:2: matrix row has 5 columns, expected 6"),
            std::string::npos);
  std::ofstream(dir + "/m2.csv") << "0,1,2,3,4,5\n1,0,2,3,4,-5\n";
  EXPECT_NE(msg([&] { read_demands(dir + "/m2.csv", ring); }).find("m2.csv:2: field 'column 6'"), std::string::npos);
  std::ofstream(dir + "/paths.txt") << "0 2 0 1 2\n0 2 0 2\n1 0 1 0\n";
  const std::vector<Demand> dem{{0, 2, 5, 0}, {1, 0, 5, 0}};
  EXPECT_NE(msg([&] { read_paths(dir + "/paths.txt", g, dem); }).find("paths.txt:2: field 'node 1': no link from 0 to 2"),
            std::string::npos);
  std::ofstream(dir + "/rows.csv") << "src,dst,volume,class\n0,2,5,0\n0,9,1,0\n";
  EXPECT_NE(msg([&] { read_demands(dir + "/rows.csv", g); }).find("rows.csv:3: field 'dst': unknown node 9"),
            std::string::npos);
}
