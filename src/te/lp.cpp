// Exact allocation through COIN-OR CLP, path formulations.
//
// Algorithm per objective (measured on Cogentco with 4 paths per demand, docs/te.md): the
// throughput LP starts from a dual-feasible basis (all flows at zero, every link row slack), so
// CLP's dual simplex solves it fastest; the min-MLU (max-concurrent-flow) LP is highly dual
// degenerate (one U column couples every link row) and dual simplex stalls there, so it uses
// the primal simplex. Max-min tiers re-solve after changing row bounds only, which keeps the
// previous basis dual feasible: dual simplex, warm-started.
#include <ClpSimplex.hpp>
#include <ClpSolve.hpp>
#include <chrono>
#include <cstdlib>
#include <cmath>
#include <fmt/format.h>

#include "core/error.hpp"
#include "te/solver.hpp"

namespace infergrid::te {

namespace {

struct Layout {
  std::vector<int> first_col;  // per demand: its first path column
  int ncols = 0;
};

// Columns x_dp then one extra column (U or t); rows: per-demand rows (one or two per demand),
// then per-link rows. `extra_link_coef` (-c_e for MLU, else 0) multiplies the extra column.
ClpSimplex build(const Problem& p, Layout& lay, bool extra_in_links, int demand_rows_per_demand) {
  const auto& g = *p.graph;
  const int nd = static_cast<int>(p.demands.size());
  const int nl = static_cast<int>(g.links.size());
  const int nrows = nd * demand_rows_per_demand + nl;
  std::vector<CoinBigIndex> start{0};
  std::vector<int> idx;
  std::vector<double> val;
  lay.first_col.resize(static_cast<std::size_t>(nd));
  int col = 0;
  for (int d = 0; d < nd; ++d) {
    lay.first_col[static_cast<std::size_t>(d)] = col;
    for (const Path& path : p.paths[static_cast<std::size_t>(d)]) {
      for (int r = 0; r < demand_rows_per_demand; ++r) {
        idx.push_back(d * demand_rows_per_demand + r);
        val.push_back(1.0);
      }
      for (int l : path) {
        idx.push_back(nd * demand_rows_per_demand + l);
        val.push_back(1.0);
      }
      start.push_back(static_cast<CoinBigIndex>(idx.size()));
      ++col;
    }
  }
  // The extra column (U or t).
  if (demand_rows_per_demand == 2)
    for (int d = 0; d < nd; ++d) {
      idx.push_back(d * 2 + 1);
      val.push_back(-p.demands[static_cast<std::size_t>(d)].volume);
    }
  if (extra_in_links)
    for (int l = 0; l < nl; ++l) {
      idx.push_back(nd * demand_rows_per_demand + l);
      val.push_back(-g.links[static_cast<std::size_t>(l)].capacity);
    }
  start.push_back(static_cast<CoinBigIndex>(idx.size()));
  lay.ncols = col + 1;
  std::vector<double> collb(static_cast<std::size_t>(lay.ncols), 0.0), colub(static_cast<std::size_t>(lay.ncols), COIN_DBL_MAX),
      obj(static_cast<std::size_t>(lay.ncols), 0.0);
  std::vector<double> rowlb(static_cast<std::size_t>(nrows), -COIN_DBL_MAX), rowub(static_cast<std::size_t>(nrows), COIN_DBL_MAX);
  for (int l = 0; l < nl; ++l)
    rowub[static_cast<std::size_t>(nd * demand_rows_per_demand + l)] = extra_in_links ? 0.0 : g.links[static_cast<std::size_t>(l)].capacity;
  ClpSimplex m;
  m.setLogLevel(0);
  m.loadProblem(lay.ncols, nrows, start.data(), idx.data(), val.data(), collb.data(), colub.data(),
                obj.data(), rowlb.data(), rowub.data());
  return m;
}

void extract(const Problem& p, const Layout& lay, const ClpSimplex& m, Allocation& a) {
  const double* x = m.primalColumnSolution();
  a.flow.assign(p.demands.size(), {});
  for (std::size_t d = 0; d < p.demands.size(); ++d) {
    const int c0 = lay.first_col[d];
    for (std::size_t k = 0; k < p.paths[d].size(); ++k)
      a.flow[d].push_back(std::max(0.0, x[c0 + static_cast<int>(k)]));
  }
  a.recompute_loads(p);
}

// First solve of a model: CLP's presolve (it removes the many singleton rows and columns of
// path formulations) and the given simplex variant.
void solve_initial(ClpSimplex& m, ClpSolve::SolveType method) {
  ClpSolve opts;
  opts.setSolveType(method);
  const char* env = std::getenv("INFERGRID_LP_PRESOLVE");
  const bool presolve = env ? env[0] == '1' : method != ClpSolve::useDual;
  opts.setPresolveType(presolve ? ClpSolve::presolveOn : ClpSolve::presolveOff);
  m.initialSolve(opts);
}

void check(const ClpSimplex& m, const char* what) {
  if (m.status() != 0)
    throw core::InputError(fmt::format("te: the {} LP did not solve (CLP status {}, secondary {})", what,
                                       m.status(), m.secondaryStatus()));
}

}  // namespace

void resolve_from_slack(ClpSimplex& m) {
  m.allSlackBasis(true);
  m.primal();
  while (m.status() == 1 && m.primalTolerance() < 0.99e-5 && m.sumPrimalInfeasibilities() < 1e-3) {
    m.setPrimalTolerance(m.primalTolerance() * 10);
    if (std::getenv("INFERGRID_TE_DEBUG"))
      fmt::print(stderr, "primal tolerance widened to {:g} ({:g} infeasible)\n", m.primalTolerance(), m.sumPrimalInfeasibilities());
    m.primal(1);
  }
}

Allocation solve_lp_unscaled(const Problem& p, Objective o) {
  validate(p, o);
  const auto t0 = std::chrono::steady_clock::now();
  Allocation a;
  a.objective = o;
  a.method = "lp";
  Layout lay;
  const int nd = static_cast<int>(p.demands.size());
  if (o == Objective::kMlu) {
    ClpSimplex m = build(p, lay, true, 1);
    for (int d = 0; d < nd; ++d) {
      const double v = p.demands[static_cast<std::size_t>(d)].volume;
      m.setRowBounds(d, v, v);
    }
    m.setObjectiveCoefficient(lay.ncols - 1, 1.0);
    solve_initial(m, ClpSolve::usePrimalorSprint);
    check(m, "min-MLU");
    extract(p, lay, m, a);
    a.iterations = m.numberIterations();
    a.value = a.mlu(*p.graph);
  } else if (o == Objective::kMaxFlow) {
    ClpSimplex m = build(p, lay, false, 1);
    for (int d = 0; d < nd; ++d) m.setRowBounds(d, 0, p.demands[static_cast<std::size_t>(d)].volume);
    for (int c = 0; c + 1 < lay.ncols; ++c) m.setObjectiveCoefficient(c, -1.0);
    m.setColumnBounds(lay.ncols - 1, 0, 0);
    solve_initial(m, ClpSolve::useDual);
    check(m, "max-flow");
    extract(p, lay, m, a);
    a.iterations = m.numberIterations();
    a.value = a.total();
  } else {
    // Rows 2d: served_d in [lo, hi]; rows 2d+1: served_d - D_d t >= 0 while d is filling.
    ClpSimplex m = build(p, lay, false, 2);
    const int tcol = lay.ncols - 1;
    m.setObjectiveCoefficient(tcol, -1.0);
    m.setColumnBounds(tcol, 0, 1);
    std::vector<double> lower(static_cast<std::size_t>(nd), 0.0);
    for (int d = 0; d < nd; ++d) m.setRowBounds(2 * d, 0, 0);
    std::vector<int> classes;
    for (const auto& d : p.demands) classes.push_back(d.cls);
    std::sort(classes.begin(), classes.end());
    classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
    int solves = 0;
    // Fills the demands in `active` max-min fairly: each demand d serves
    // lower_d + t (cap_d D_d - lower_d) with one common t, raised until the links bind;
    // bottlenecked demands (non-zero dual on their fairness row) freeze, the rest go on.
    // The same semantics as the fast solver's water-filling levels.
    auto fill = [&](std::vector<int> active, const std::vector<double>& cap_frac, bool exact) {
      // What demand d may still gain in this phase.
      auto span_of = [&](int d) {
        const double v = p.demands[static_cast<std::size_t>(d)].volume;
        return std::max(cap_frac[static_cast<std::size_t>(d)] * v - lower[static_cast<std::size_t>(d)], 0.0);
      };
      for (int d : active) {
        const double v = p.demands[static_cast<std::size_t>(d)].volume;
        m.modifyCoefficient(2 * d + 1, tcol, -span_of(d));
        m.setRowBounds(2 * d, lower[static_cast<std::size_t>(d)], cap_frac[static_cast<std::size_t>(d)] * v);
        m.setRowBounds(2 * d + 1, lower[static_cast<std::size_t>(d)], COIN_DBL_MAX);
      }
      auto freeze = [&](int d, double t) {
        const double v = p.demands[static_cast<std::size_t>(d)].volume;
        const double gain = std::min(t, 1.0) * span_of(d);
        lower[static_cast<std::size_t>(d)] += gain;
        m.setRowBounds(2 * d, lower[static_cast<std::size_t>(d)], exact ? lower[static_cast<std::size_t>(d)] : v);
        m.setRowBounds(2 * d + 1, -COIN_DBL_MAX, COIN_DBL_MAX);
      };
      m.setWhatsChanged(0);  // the matrix changed under CLP's cached (scaled, row) copies
      while (!active.empty()) {
        m.setColumnBounds(tcol, 0, 1);
        // The objective is the level's throughput (t x the active spans), not t: with t's
        // coefficient 1 the duals are the total span times smaller, under the freeze threshold
        // and CLP's tolerance on large instances (Kdl top 20k: the first level froze every demand
        // as "degenerate", 6,112 of them with a free path and 19% below the fast allocation).
        double total = 0;
        for (int d : active) total += span_of(d);
        m.setObjectiveCoefficient(tcol, -std::max(total, 1e-9));
        m.dual();
        if (m.status() != 0) m.primal();  // a changed matrix can leave dual simplex stuck
        // Link duals far above the level's price are cancellation in an ill-conditioned basis
        // (ASN2k: 1e17 against a price of 1e3, and a demand froze with a free path); such a level
        // is solved again by primal simplex from the slack basis (the fast levels' master stays
        // under 300x on Kdl, Cogentco and UsCarrier).
        double largest = 0;
        for (int l = 0; l < static_cast<int>(p.graph->links.size()); ++l)
          largest = std::max(largest, std::fabs(m.dualRowSolution()[2 * nd + l]));
        // Every level LP is feasible (t at its last value); from a warm basis CLP can still end
        // "infeasible" by 1e-7 when capacities span two orders of magnitude.
        if (m.status() == 1 || (m.status() == 0 && largest > 1e6 * std::max(total, 1e-9))) resolve_from_slack(m);
        ++solves;
        check(m, "max-min");
        const double t = m.primalColumnSolution()[tcol];
        // Bottlenecked demands (a non-zero dual on their fairness row) freeze. A dual is the sum
        // of link duals along a path less the demand row's, and carries their rounding: links
        // that only frozen demands fill get arbitrary duals (1e11 on ASN2k), so a fairness dual
        // counts only above 1e-9 of the terms it comes from and 1e-13 of the largest dual. If none
        // is above that, the raw duals decide; if none of those either, every demand freezes.
        const double* dual = m.dualRowSolution();
        const double* x = m.primalColumnSolution();
        double top = 0;
        for (int r = 0; r < m.numberRows(); ++r) top = std::max(top, std::fabs(dual[r]));
        auto priced = [&](int d, bool careful) {
          const double y = std::fabs(dual[2 * d + 1]);
          if (!careful) return y > 1e-9;
          // The fairness dual is the demand row's dual and the link duals along a path the
          // demand uses, summed: its rounding is theirs.
          double terms = std::fabs(dual[2 * d]);
          const int c0 = lay.first_col[static_cast<std::size_t>(d)];
          for (std::size_t k = 0; k < p.paths[static_cast<std::size_t>(d)].size(); ++k) {
            if (x[c0 + static_cast<int>(k)] <= 0) continue;
            double sum = 0;
            for (int l : p.paths[static_cast<std::size_t>(d)][k]) sum += std::fabs(dual[2 * nd + l]);
            terms = std::max(terms, sum);
          }
          return y > 1e-9 * (1 + terms) && y > 1e-13 * top;
        };
        std::vector<int> keep;
        if (t >= 1 - 1e-9) {
          for (int d : active) freeze(d, t);
        } else {
          std::vector<char> freezes(active.size(), 0);
          std::size_t n = 0;
          for (const bool careful : {true, false}) {
            for (std::size_t i = 0; i < active.size(); ++i) n += freezes[i] = priced(active[i], careful);
            if (n > 0) break;
          }
          for (std::size_t i = 0; i < active.size(); ++i) {
            if (n == 0 || freezes[i]) {
              freeze(active[i], t);
            } else {
              keep.push_back(active[i]);
            }
          }
        }
        active = std::move(keep);
      }
    };
    // Guarantees first: every guaranteed class is filled up to its fraction, together.
    std::vector<double> cap(static_cast<std::size_t>(nd), 1.0);
    if (!p.class_guarantee.empty()) {
      std::vector<int> g;
      std::vector<double> gfrac(static_cast<std::size_t>(nd), 0.0);
      for (int d = 0; d < nd; ++d)
        for (const auto& [cls, frac] : p.class_guarantee)
          if (p.demands[static_cast<std::size_t>(d)].cls == cls && frac > 0) {
            gfrac[static_cast<std::size_t>(d)] = std::min(frac, 1.0);
            g.push_back(d);
          }
      fill(g, gfrac, false);
      for (int d : g) m.setRowBounds(2 * d, lower[static_cast<std::size_t>(d)], lower[static_cast<std::size_t>(d)]);
    }
    for (int cls : classes) {
      std::vector<int> active;
      for (int d = 0; d < nd; ++d)
        if (p.demands[static_cast<std::size_t>(d)].cls == cls && !p.paths[static_cast<std::size_t>(d)].empty())
          active.push_back(d);
      fill(active, cap, true);
    }
    extract(p, lay, m, a);
    a.iterations = solves;
    a.value = a.total();
  }
  a.bound = a.value;
  a.solve_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return a;
}

}  // namespace infergrid::te
