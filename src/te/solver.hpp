#pragma once
// Bandwidth allocation on candidate paths: minimize maximum link utilization, maximize total
// throughput, or priority-tiered max-min fairness (B4/SWAN). Exactly, through COIN-OR CLP on the
// full path LP, or fast, by column generation on a small master (docs/te.md).
#include <string>
#include <vector>

#include "te/demands.hpp"

class ClpSimplex;

namespace infergrid::te {

enum class Objective { kMlu, kMaxFlow, kMaxMin };
Objective parse_objective(const std::string& s);
const char* objective_name(Objective o);

struct Problem {
  const Graph* graph = nullptr;
  std::vector<Demand> demands;
  std::vector<std::vector<Path>> paths;  // per demand
  // Per class: a fraction of each demand guaranteed before strict priority applies (max-min).
  std::vector<std::pair<int, double>> class_guarantee;
  // The fast allocator's certified relative gap (MLU, max-flow): it stops once its objective is
  // within this fraction of a bound on the optimum.
  double tolerance = 0.01;
};

struct Allocation {
  Objective objective = Objective::kMlu;
  std::string method;
  double value = 0;     // MLU as a fraction, or total throughput
  double bound = 0;     // bound on the optimum (the LP optimum where the method is exact)
  double solve_ms = 0;
  int iterations = 0;
  std::vector<std::vector<double>> flow;  // per demand, per path
  std::vector<double> link_load;
  double total() const;
  double mlu(const Graph& g) const;
  double served_fraction(std::size_t d, const Problem& p) const;
  void recompute_loads(const Problem& p);
};

// Checks the problem (paths that use existing links and join their demand's ends, no demand
// without a path under MLU); throws InputError.
void validate(const Problem& p, Objective o);

// Both solve in units where the largest capacity is 1000 (the simplex tolerances assume numbers
// of ordinary size: capacities in bytes/s, 5e10, made CLP return zero flows) and scale back.
Allocation solve_lp(const Problem& p, Objective o);
Allocation solve_lp_unscaled(const Problem& p, Objective o);
// Solves a max-min level LP again by primal simplex from the slack basis, widening the primal
// tolerance up to 1e-5 while CLP still ends it "infeasible" by little (the LP's and the fast
// levels' recovery; every level LP is feasible).
void resolve_from_slack(ClpSimplex& m);

// The same LP's optimum by column generation (MLU, max-flow); `warm` seeds the master with the
// paths a previous allocation used.
Allocation solve_column_generation(const Problem& p, Objective o, const Allocation* warm = nullptr);
// MLU or max-flow by an exponential potential and Gauss-Seidel sweeps over the demands, until
// the objective is within `eps` of the Lagrangian bound it computes (`*certified` true) or
// `max_sweeps` full sweeps have run (false). `bound` is that bound.
Allocation solve_potential(const Problem& p, Objective o, double eps, int max_sweeps,
                           const Allocation* warm = nullptr, bool* certified = nullptr);
// Tiered max-min as water-filling levels on one column-generation master, exact (the first
// level starts from the MLU master's optimal basis).
Allocation solve_max_min_levels(const Problem& p);

// Fast allocation (docs/te.md): the potential method for MLU and max-flow, certified within
// p.tolerance of the optimum (exact column generation, seeded with its paths, where it cannot
// certify within its sweep budget; exact column generation outright on small problems);
// water-filling levels by column generation for max-min. `warm` (optional) is a previous allocation of the same demands, its flows aligned
// with p.paths: incremental re-allocation after a link failure or a demand change.
Allocation solve_fast(const Problem& p, Objective o, const Allocation* warm = nullptr);
// Below this many (demand, path) columns solve_fast uses exact column generation.
extern const std::size_t kSmallProblemColumns;
// Exact column generation for every objective (scaled like solve_lp).
Allocation solve_exact_cg(const Problem& p, Objective o, const Allocation* warm = nullptr);

}  // namespace infergrid::te
