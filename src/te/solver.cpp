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

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// ---- min MLU: entropic mirror descent on a softmax of utilizations ---------------------------
//
// Each demand splits over its paths (a point on a simplex). The maximum utilization is smoothed
// as (1/b) log sum_e exp(b u_e); its gradient prices link e at w_e / c_e with w = softmax(b u),
// and w also certifies a lower bound: any routing has MLU >= sum_e w_e u_e >= sum_d D_d
// min_p sum_{e in p} w_e / c_e. Splits move multiplicatively away from expensive paths; b grows
// as the gap closes. The run stops when MLU <= (1 + tolerance) x the best bound.
Allocation fast_mlu(const Problem& p, const FastOptions& opt, const Allocation* warm) {
  const auto& g = *p.graph;
  const std::size_t nd = p.demands.size(), nl = g.links.size();
  std::vector<double> inv_cap(nl);
  for (std::size_t l = 0; l < nl; ++l) inv_cap[l] = g.links[l].capacity > 0 ? 1.0 / g.links[l].capacity : 1e12;
  // Flattened paths for speed.
  std::vector<std::size_t> path_start{0}, demand_path{0};
  std::vector<int> path_links;
  for (std::size_t d = 0; d < nd; ++d) {
    for (const Path& path : p.paths[d]) {
      path_links.insert(path_links.end(), path.begin(), path.end());
      path_start.push_back(path_links.size());
    }
    demand_path.push_back(path_start.size() - 1);
  }
  const std::size_t np = path_start.size() - 1;
  std::vector<double> split(np);
  for (std::size_t d = 0; d < nd; ++d) {
    const std::size_t k = demand_path[d + 1] - demand_path[d];
    for (std::size_t j = 0; j < k; ++j) {
      double s = 1.0 / static_cast<double>(k);
      if (warm && warm->flow.size() == nd && warm->flow[d].size() == k) {
        const double tot = std::accumulate(warm->flow[d].begin(), warm->flow[d].end(), 0.0);
        if (tot > 0) s = std::max(warm->flow[d][j] / tot, 1e-6);
      }
      split[demand_path[d] + j] = s;
    }
  }
  std::vector<double> load(nl), w(nl), cost(np);
  double best_lb = 0, best_u = INFINITY;
  std::vector<double> best_split = split;
  double delta = 0.05;  // smoothing accuracy, tightened as the gap closes
  const double eta = 2.0;
  int it = 0;
  for (; it < opt.max_iterations; ++it) {
    std::fill(load.begin(), load.end(), 0.0);
    for (std::size_t d = 0; d < nd; ++d) {
      const double vol = p.demands[d].volume;
      for (std::size_t q = demand_path[d]; q < demand_path[d + 1]; ++q) {
        const double x = vol * split[q];
        for (std::size_t i = path_start[q]; i < path_start[q + 1]; ++i) load[static_cast<std::size_t>(path_links[i])] += x;
      }
    }
    double u = 0;
    for (std::size_t l = 0; l < nl; ++l) u = std::max(u, load[l] * inv_cap[l]);
    if (u < best_u) {
      best_u = u;
      best_split = split;
    }
    if (u <= 0) break;
    const double beta = std::log(static_cast<double>(nl)) / (delta * u);
    double z = 0;
    for (std::size_t l = 0; l < nl; ++l) {
      w[l] = std::exp(beta * (load[l] * inv_cap[l] - u));
      z += w[l];
    }
    for (std::size_t l = 0; l < nl; ++l) w[l] = w[l] / z * inv_cap[l];  // price per unit of flow
    double lb = 0;
    for (std::size_t d = 0; d < nd; ++d) {
      double best = INFINITY;
      for (std::size_t q = demand_path[d]; q < demand_path[d + 1]; ++q) {
        double c = 0;
        for (std::size_t i = path_start[q]; i < path_start[q + 1]; ++i) c += w[static_cast<std::size_t>(path_links[i])];
        cost[q] = c;
        best = std::min(best, c);
      }
      lb += p.demands[d].volume * best;
      // Multiplicative step on the relative excess cost of each path.
      double norm = 0;
      for (std::size_t q = demand_path[d]; q < demand_path[d + 1]; ++q) {
        split[q] = std::max(split[q] * std::exp(-eta * (cost[q] / best - 1.0)), 1e-12);
        norm += split[q];
      }
      for (std::size_t q = demand_path[d]; q < demand_path[d + 1]; ++q) split[q] /= norm;
    }
    best_lb = std::max(best_lb, lb);
    if (best_u <= (1 + opt.tolerance) * best_lb) break;
    if (u <= (1 + 2 * delta) * best_lb) delta = std::max(delta * 0.7, opt.tolerance / 4);
  }
  Allocation a;
  a.objective = Objective::kMlu;
  a.method = "fast";
  a.iterations = it;
  a.flow.assign(nd, {});
  for (std::size_t d = 0; d < nd; ++d)
    for (std::size_t q = demand_path[d]; q < demand_path[d + 1]; ++q) a.flow[d].push_back(p.demands[d].volume * best_split[q]);
  a.recompute_loads(p);
  a.value = a.mlu(g);
  a.bound = best_lb;
  return a;
}

// ---- max-min and max-flow: progressive filling over ordered tunnels (B4) --------------------
//
// All unfrozen demands of a tier grow their served fraction together, each on its first path
// with no saturated link (paths are tried in latency order, as B4 tries tunnels). When a link
// saturates, demands on it move to their next usable path or freeze. Events are link
// saturations (each link saturates once) or the tier's cap, so the filling is exact water-filling
// for that tunnel order. Max-flow then tops up: demands not fully served push the rest along any
// path with room, shortest first.
struct Filler {
  const Problem& p;
  std::vector<double> residual;
  std::vector<std::vector<double>> flow;
  std::vector<double> served;
  explicit Filler(const Problem& prob) : p(prob) {
    for (const auto& l : p.graph->links) residual.push_back(l.capacity);
    flow.resize(p.demands.size());
    for (std::size_t d = 0; d < p.demands.size(); ++d) flow[d].assign(p.paths[d].size(), 0.0);
    served.assign(p.demands.size(), 0.0);
  }
  bool usable(const Path& path) const {
    for (int l : path)
      if (residual[static_cast<std::size_t>(l)] <= 1e-12 * (1 + p.graph->links[static_cast<std::size_t>(l)].capacity)) return false;
    return true;
  }
  // Fills `active` demands up to fraction `cap` of their volume (fairly in fraction).
  void fill(std::vector<std::size_t> active, double cap) {
    std::vector<std::size_t> cur(p.demands.size(), 0);
    auto advance_path = [&](std::size_t d) {
      while (cur[d] < p.paths[d].size() && !usable(p.paths[d][cur[d]])) ++cur[d];
      return cur[d] < p.paths[d].size();
    };
    std::vector<std::size_t> alive;
    double tau = 0;  // common served fraction of the alive demands... relative to their start
    std::vector<double> base(p.demands.size());
    for (std::size_t d : active) {
      if (served[d] >= cap * p.demands[d].volume - 1e-12) continue;
      if (advance_path(d)) alive.push_back(d);
    }
    // Fractions differ at the start (earlier phases); bring everyone to a common level by
    // growing each demand's fraction from its own start with the same speed: a demand d at
    // fraction f_d is frozen until tau reaches f_d. For simplicity the tier starts all alive
    // demands at the lowest fraction and lets the others wait.
    for (std::size_t d : alive) base[d] = served[d] / p.demands[d].volume;
    std::vector<double> rate(residual.size());
    while (!alive.empty()) {
      // Participants: alive demands whose fraction equals the current level tau.
      double level = INFINITY;
      for (std::size_t d : alive) level = std::min(level, base[d]);
      tau = std::max(tau, level);
      std::fill(rate.begin(), rate.end(), 0.0);
      double next_join = cap;
      for (std::size_t d : alive) {
        if (base[d] > tau + 1e-12) {
          next_join = std::min(next_join, base[d]);
          continue;
        }
        for (int l : p.paths[d][cur[d]]) rate[static_cast<std::size_t>(l)] += p.demands[d].volume;
      }
      double step = std::min(cap, next_join) - tau;
      for (std::size_t l = 0; l < residual.size(); ++l)
        if (rate[l] > 0) step = std::min(step, residual[l] / rate[l]);
      step = std::max(step, 0.0);
      for (std::size_t d : alive) {
        if (base[d] > tau + 1e-12) continue;
        const double x = step * p.demands[d].volume;
        flow[d][cur[d]] += x;
        served[d] += x;
        base[d] = tau + step;
      }
      for (std::size_t l = 0; l < residual.size(); ++l) residual[l] = std::max(0.0, residual[l] - step * rate[l]);
      tau += step;
      std::vector<std::size_t> next;
      for (std::size_t d : alive) {
        if (base[d] >= cap - 1e-12) continue;  // reached the tier's cap
        if (advance_path(d)) next.push_back(d);
      }
      alive = std::move(next);
    }
  }
  void top_up(const std::vector<std::size_t>& order) {
    for (std::size_t d : order) {
      for (std::size_t k = 0; k < p.paths[d].size(); ++k) {
        double room = p.demands[d].volume - served[d];
        if (room <= 1e-12) break;
        for (int l : p.paths[d][k]) room = std::min(room, residual[static_cast<std::size_t>(l)]);
        if (room <= 1e-12) continue;
        flow[d][k] += room;
        served[d] += room;
        for (int l : p.paths[d][k]) residual[static_cast<std::size_t>(l)] -= room;
      }
    }
  }
};

Allocation fast_fill(const Problem& p, Objective o) {
  Filler f(p);
  std::vector<int> classes;
  for (const auto& d : p.demands) classes.push_back(d.cls);
  std::sort(classes.begin(), classes.end());
  classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
  auto members = [&](auto pred) {
    std::vector<std::size_t> v;
    for (std::size_t d = 0; d < p.demands.size(); ++d)
      if (!p.paths[d].empty() && p.demands[d].volume > 0 && pred(d)) v.push_back(d);
    return v;
  };
  if (o == Objective::kMaxMin) {
    for (const auto& [cls, frac] : p.class_guarantee)
      if (frac > 0) f.fill(members([&](std::size_t d) { return p.demands[d].cls == cls; }), std::min(frac, 1.0));
    for (int cls : classes) f.fill(members([&](std::size_t d) { return p.demands[d].cls == cls; }), 1.0);
  } else {
    f.fill(members([](std::size_t) { return true; }), 1.0);
    auto order = members([](std::size_t) { return true; });
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return p.paths[a].front().size() < p.paths[b].front().size();
    });
    f.top_up(order);
  }
  Allocation a;
  a.objective = o;
  a.method = "fast";
  a.flow = std::move(f.flow);
  a.recompute_loads(p);
  a.value = a.total();
  double bound = 0;
  for (const auto& d : p.demands) bound += d.volume;
  a.bound = bound;  // total demand bounds throughput
  return a;
}

}  // namespace

Allocation solve_fast(const Problem& p, Objective o, const FastOptions& opt, const Allocation* warm) {
  validate(p, o);
  const auto t0 = std::chrono::steady_clock::now();
  if (o != Objective::kMaxMin && !warm) return solve_column_generation(p, o);
  Allocation a = o == Objective::kMlu ? fast_mlu(p, opt, warm) : fast_fill(p, o);
  a.solve_ms = ms_since(t0);
  return a;
}

}  // namespace infergrid::te
