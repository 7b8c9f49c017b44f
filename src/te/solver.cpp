#include "te/solver.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "core/error.hpp"

namespace infergrid::te {

Objective parse_objective(const std::string& s) {
  if (s == "mlu") return Objective::kMlu;
  if (s == "max-flow") return Objective::kMaxFlow;
  if (s == "max-min") return Objective::kMaxMin;
  core::fail_flag("objective", fmt::format("unknown objective '{}' (mlu, max-flow, max-min)", s));
}

const char* objective_name(Objective o) {
  switch (o) {
    case Objective::kMlu:
      return "mlu";
    case Objective::kMaxFlow:
      return "max-flow";
    default:
      return "max-min";
  }
}

double Allocation::total() const {
  double t = 0;
  for (const auto& f : flow)
    for (double x : f) t += x;
  return t;
}

double Allocation::mlu(const Graph& g) const {
  double u = 0;
  for (std::size_t l = 0; l < link_load.size(); ++l) {
    const double c = g.links[l].capacity;
    if (c > 0) u = std::max(u, link_load[l] / c);
    else if (link_load[l] > 1e-9) return INFINITY;
  }
  return u;
}

double Allocation::served_fraction(std::size_t d, const Problem& p) const {
  double s = 0;
  for (double x : flow[d]) s += x;
  return s / p.demands[d].volume;
}

void Allocation::recompute_loads(const Problem& p) {
  link_load.assign(p.graph->links.size(), 0.0);
  for (std::size_t d = 0; d < flow.size(); ++d)
    for (std::size_t k = 0; k < flow[d].size(); ++k)
      for (int l : p.paths[d][k]) link_load[static_cast<std::size_t>(l)] += flow[d][k];
}

void validate(const Problem& p, Objective o) {
  const auto& g = *p.graph;
  if (p.paths.size() != p.demands.size()) throw core::InputError("te: paths and demands differ in number");
  for (std::size_t d = 0; d < p.demands.size(); ++d) {
    const auto& dem = p.demands[d];
    if (!(dem.volume >= 0) || !std::isfinite(dem.volume))
      throw core::InputError(fmt::format("te: demand {} -> {} has a bad volume", g.nodes[static_cast<std::size_t>(dem.src)].id,
                                         g.nodes[static_cast<std::size_t>(dem.dst)].id));
    if (p.paths[d].empty() && o == Objective::kMlu)
      throw core::InputError(fmt::format("te: demand {} -> {} has no path (MLU needs every demand routed)",
                                         g.nodes[static_cast<std::size_t>(dem.src)].id, g.nodes[static_cast<std::size_t>(dem.dst)].id));
    for (const Path& path : p.paths[d]) {
      int at = dem.src;
      for (int l : path) {
        if (l < 0 || static_cast<std::size_t>(l) >= g.links.size() || g.links[static_cast<std::size_t>(l)].src != at)
          throw core::InputError("te: a path does not follow the links of the graph");
        at = g.links[static_cast<std::size_t>(l)].dst;
      }
      if (at != dem.dst) throw core::InputError("te: a path does not end at its demand's destination");
    }
  }
  for (const auto& l : g.links)
    if (!(l.capacity >= 0)) throw core::InputError("te: negative link capacity");
}

namespace {

}  // namespace

Allocation solve_fast(const Problem& p, Objective o, const Allocation* warm) {
  if (o == Objective::kMaxMin) return solve_max_min_levels(p);
  return solve_column_generation(p, o, warm);
}

}  // namespace infergrid::te
