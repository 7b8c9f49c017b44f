#pragma once
// The replica balancer inside a site, shared by the planet twin (a deployment's replicas) and
// the gateway (a site's backends): the usable replica with the least load, the first on ties
// (vLLM production-stack's and llm-d's default when no scorer is configured).
#include <cstddef>
#include <optional>

namespace infergrid::control {

template <class Usable, class Load>
std::optional<std::size_t> least_loaded(std::size_t n, Usable&& usable, Load&& load) {
  std::optional<std::size_t> best;
  double best_load = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!usable(i)) continue;
    const double l = static_cast<double>(load(i));
    if (!best || l < best_load) best = i, best_load = l;
  }
  return best;
}

}  // namespace infergrid::control
