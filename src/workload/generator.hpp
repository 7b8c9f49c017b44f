#pragma once
// Synthetic workloads: Poisson or Gamma (given CV) arrivals at a constant or piecewise-constant
// rate, with token lengths from simple distributions. Streamed: nothing grows with the count.
#include <memory>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "workload/request.hpp"

namespace infergrid::workload {

// "fixed:N", "uniform:A:B", "lognormal:MEAN:CV", "exponential:MEAN" (geometric, at least 1),
// "servegen:NAME" (an empirical distribution from data/workload/servegen_quantiles.csv, sampled by
// inverse CDF between its quantiles; may be 0, e.g. image counts).
struct LengthDist {
  enum class Kind { kFixed, kUniform, kLogNormal, kExponential, kEmpirical } kind = Kind::kFixed;
  double a = 1, b = 1;
  std::shared_ptr<const std::vector<std::pair<double, double>>> quantiles;  // (q, value)
  static LengthDist parse(const std::string& spec, const std::string& flag);
  std::int32_t sample(core::Rng& rng) const;
  double mean() const;
};

// The empirical quantile table NAME of a quantile CSV (`dist,q,value`); InputError if absent.
std::shared_ptr<const std::vector<std::pair<double, double>>> load_quantiles(const std::string& path,
                                                                             const std::string& name);

struct GeneratorSpec {
  double rate = 1;  // requests per second (when schedule is empty)
  double cv = 1;    // coefficient of variation of inter-arrival times: 1 = Poisson
  // Piecewise-constant rate: (start second, rate) pairs, the first starting at 0.
  std::vector<std::pair<double, double>> schedule;
  std::uint64_t count = 1000;
  LengthDist prompt, output;
  std::uint64_t seed = 1;
  static std::vector<std::pair<double, double>> parse_schedule(const std::string& spec);
};

std::unique_ptr<RequestSource> make_generator(const GeneratorSpec& spec);

}  // namespace infergrid::workload
