#include "te/solver.hpp"

#include <algorithm>
#include <optional>

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

// Solves `p` in units where the largest capacity is 1000, and scales the answer back.
template <class Solve>
Allocation scaled(const Problem& p, Objective o, const Allocation* warm, Solve&& solve) {
  double cap = 0;
  for (const auto& l : p.graph->links) cap = std::max(cap, l.capacity);
  if (!(cap > 0) || (cap >= 10 && cap <= 1e5)) return solve(p, warm);
  const double k = 1000 / cap;
  Graph g = *p.graph;
  for (auto& l : g.links) l.capacity *= k;
  Problem q = p;
  q.graph = &g;
  for (auto& d : q.demands) d.volume *= k;
  std::optional<Allocation> w;
  if (warm) {
    w = *warm;
    for (auto& v : w->flow)
      for (auto& x : v) x *= k;
    for (auto& x : w->link_load) x *= k;
  }
  Allocation a = solve(q, w ? &*w : nullptr);
  for (auto& v : a.flow)
    for (auto& x : v) x /= k;
  for (auto& x : a.link_load) x /= k;
  if (o != Objective::kMlu) {  // MLU is a ratio; the others are volumes
    a.value /= k;
    a.bound /= k;
  }
  return a;
}

}  // namespace

const std::size_t kSmallProblemColumns = 5000;

Allocation solve_lp(const Problem& p, Objective o) {
  return scaled(p, o, nullptr, [o](const Problem& q, const Allocation*) { return solve_lp_unscaled(q, o); });
}

Allocation solve_fast(const Problem& p, Objective o, const Allocation* warm) {
  return scaled(p, o, warm, [o](const Problem& q, const Allocation* w) {
    if (o == Objective::kMaxMin) return solve_max_min_levels(q);
    // Small problems (B4: 132 demands) solve exactly by column generation in a millisecond or
    // two; the potential pays off on large ones.
    std::size_t columns = 0;
    for (const auto& v : q.paths) columns += v.size();
    if (columns < kSmallProblemColumns) return solve_column_generation(q, o, w);
    bool certified = false;
    Allocation a = solve_potential(q, o, q.tolerance, 300, w, &certified);
    a.method = "fast";
    if (certified) return a;
    // Not certified within the budget: exact column generation, seeded with the paths that
    // carry at least a thousandth of their demand.
    Allocation seed = a;
    for (std::size_t d = 0; d < seed.flow.size(); ++d)
      for (double& x : seed.flow[d])
        if (x < 1e-3 * q.demands[d].volume) x = 0;
    Allocation b = solve_column_generation(q, o, &seed);
    b.method = "fast (column generation after the potential)";
    b.solve_ms += a.solve_ms;
    b.iterations += a.iterations;
    return b;
  });
}

Allocation solve_exact_cg(const Problem& p, Objective o, const Allocation* warm) {
  return scaled(p, o, warm, [o](const Problem& q, const Allocation* w) {
    if (o == Objective::kMaxMin) return solve_max_min_levels(q);
    return solve_column_generation(q, o, w);
  });
}

}  // namespace infergrid::te
