#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "core/csv.hpp"
#include "core/rng.hpp"
#include "core/sketch.hpp"
#include "sim/event_queue.hpp"

using namespace infergrid;

TEST(Sketch, QuantilesWithinRelativeAccuracy) {
  core::Rng rng(7);
  std::lognormal_distribution<double> d(3.0, 1.2);
  core::QuantileSketch s(0.005);
  std::vector<double> v;
  for (int i = 0; i < 200000; ++i) {
    const double x = d(rng);
    v.push_back(x);
    s.add(x);
  }
  std::sort(v.begin(), v.end());
  for (double q : {0.01, 0.5, 0.9, 0.99, 0.999}) {
    const double exact = v[static_cast<std::size_t>(std::ceil(q * v.size())) - 1];
    EXPECT_NEAR(s.quantile(q) / exact, 1.0, 0.0101) << "q=" << q;
  }
  double sum = 0;
  for (double x : v) sum += x;
  EXPECT_NEAR(s.mean(), sum / v.size(), 1e-9 * sum);
  EXPECT_EQ(s.max(), v.back());
}

TEST(Rng, StreamsAreSeededAndIndependent) {
  core::Rng a(1, "x"), b(1, "x"), c(1, "y"), d(2, "x");
  const auto va = a();
  EXPECT_EQ(va, b());
  EXPECT_NE(va, c());
  EXPECT_NE(va, d());
  for (int i = 0; i < 1000; ++i) {
    const double u = a.uniform();
    ASSERT_GT(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

TEST(EventQueue, OrdersByTimeThenSequence) {
  sim::EventQueue q;
  q.push(5, 1);
  q.push(3, 2);
  q.push(5, 3);
  q.push(3, 4);
  std::vector<int> order;
  while (!q.empty()) order.push_back(q.pop().target);
  EXPECT_EQ(order, (std::vector<int>{2, 4, 1, 3}));
}

TEST(Csv, SplitsQuotedFieldsAndParsesStrictly) {
  std::vector<std::string> f;
  ASSERT_TRUE(core::split_csv("a,\"b,c\",\"d\"\"e\",", f));
  EXPECT_EQ(f, (std::vector<std::string>{"a", "b,c", "d\"e", ""}));
  EXPECT_FALSE(core::split_csv("a,\"b", f));
  std::int64_t i = 0;
  EXPECT_TRUE(core::parse_int(" 42 ", i));
  EXPECT_EQ(i, 42);
  EXPECT_TRUE(core::parse_int("12.0", i));
  EXPECT_FALSE(core::parse_int("12.5", i));
  EXPECT_FALSE(core::parse_int("12x", i));
  double d = 0;
  EXPECT_FALSE(core::parse_double("nan", d));
  EXPECT_FALSE(core::parse_double("", d));
}
