// The kernel, the router and the replica against queueing theory: Poisson arrivals into one
// server with deterministic service (M/D/1, Pollaczek-Khinchine) and into c servers with
// exponential service behind a central FCFS queue (M/M/c, Erlang C).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "test_util.hpp"
#include "workload/generator.hpp"

using namespace infergrid;

namespace {

double mean_wait_s(double rate, std::uint64_t n, const std::string& output_dist, int servers,
                   std::uint64_t seed) {
  // Each iteration takes 1 ms; a request of T output tokens is one prefill and T-1 decodes,
  // so its service time is T ms, alone on a replica that admits one sequence at a time.
  auto step = std::make_shared<testing_util::ConstantStep>(0.001, 0.001);
  workload::GeneratorSpec g;
  g.rate = rate;
  g.count = n;
  g.seed = seed;
  g.prompt = workload::LengthDist::parse("fixed:1", "prompt");
  g.output = workload::LengthDist::parse(output_dist, "output");
  auto src = workload::make_generator(g);
  sim::SiteConfig cfg;
  cfg.replicas = servers;
  cfg.router = "central-queue";
  cfg.engine.max_num_seqs = 1;
  cfg.engine.max_num_batched_tokens = 16;
  sim::Metrics m(sim::Slo{});
  sim::SiteSim site(step, 1'000'000, cfg);
  const auto res = site.run(*src, m);
  EXPECT_EQ(m.completed(), n);
  EXPECT_EQ(res.arrived, n);
  return m.queue().mean() / 1e3;
}

double erlang_c_wait(int c, double lambda, double mu) {
  const double a = lambda / mu, rho = a / c;
  double term = 1, sum = 0;
  for (int k = 0; k < c; ++k) {
    sum += term;
    term *= a / (k + 1);
  }
  const double top = term / (1 - rho);
  const double pc = top / (sum + top);
  return pc / (c * mu - lambda);
}

}  // namespace

TEST(Queueing, MD1MatchesPollaczekKhinchine) {
  const double service = 0.1;  // 100 output tokens at 1 ms
  for (double rho : {0.5, 0.8, 0.9}) {
    const double lambda = rho / service;
    const double theory = rho * service / (2 * (1 - rho));
    const std::uint64_t n = 4'000'000;
    const double w = mean_wait_s(lambda, n, "fixed:100", 1, 1);
    std::printf("M/D/1 rho %.1f: simulated Wq %.5f s, Pollaczek-Khinchine %.5f s, ratio %.4f\n", rho, w,
                theory, w / theory);
    EXPECT_NEAR(w / theory, 1.0, 0.03) << "rho=" << rho << " sim " << w << " theory " << theory;
  }
}

TEST(Queueing, MMcMatchesErlangC) {
  const int c = 4;
  const double mean_service = 0.2;  // geometric tokens with mean 200 at 1 ms: exponential
  for (double rho : {0.5, 0.8, 0.9}) {
    const double lambda = rho * c / mean_service;
    const double theory = erlang_c_wait(c, lambda, 1 / mean_service);
    const std::uint64_t n = 4'000'000;
    const double w = mean_wait_s(lambda, n, "exponential:200", c, 1);
    std::printf("M/M/%d rho %.1f: simulated Wq %.5f s, Erlang C %.5f s, ratio %.4f\n", c, rho, w, theory,
                w / theory);
    EXPECT_NEAR(w / theory, 1.0, 0.03) << "rho=" << rho << " sim " << w << " theory " << theory;
  }
}
