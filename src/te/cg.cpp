// Fast exact allocation by column generation (Dantzig-Wolfe on the path formulation).
//
// The path LP has one column per (demand, candidate path), yet at the optimum most demands use
// only their first path. The master LP therefore starts with each demand on its lowest-latency
// path and adds a path only when the link duals price it below the paths in use (negative
// reduced cost). A demand with a single path needs no row: under min-MLU its load is a constant
// (moved into the link rows' bounds); under max-flow its column takes the demand as upper
// bound. The master stays small and is re-solved warm (primal simplex keeps the basis). With
// no improving column left, the master's optimum is the full LP's optimum: the bound
// reported is the LP optimum itself, and no tolerance is traded for speed.
#include <ClpSimplex.hpp>
#include <chrono>
#include <cmath>
#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>

#include "core/error.hpp"
#include "te/solver.hpp"

namespace infergrid::te {

namespace {

struct Column {
  std::size_t demand;
  std::size_t path;
};

class Master {
 public:
  Master(const Problem& p, Objective o) : p_(p), o_(o) {
    const auto& g = *p.graph;
    nl_ = static_cast<int>(g.links.size());
    m_.setLogLevel(0);
    active_.assign(p.demands.size(), {});
    row_of_.assign(p.demands.size(), -1);
    fixed_load_.assign(static_cast<std::size_t>(nl_), 0.0);
    // Link rows first (rows 0..nl-1).
    std::vector<double> rlo(static_cast<std::size_t>(nl_), -COIN_DBL_MAX), rhi(static_cast<std::size_t>(nl_));
    for (int l = 0; l < nl_; ++l) rhi[static_cast<std::size_t>(l)] = o == Objective::kMlu ? 0.0 : g.links[static_cast<std::size_t>(l)].capacity;
    m_.resize(nl_, 0);
    for (int l = 0; l < nl_; ++l) m_.setRowBounds(l, rlo[static_cast<std::size_t>(l)], rhi[static_cast<std::size_t>(l)]);
    if (o == Objective::kMlu) {
      // Column 0: U, with -c_e in every link row.
      std::vector<int> rows(static_cast<std::size_t>(nl_));
      std::vector<double> el(static_cast<std::size_t>(nl_));
      for (int l = 0; l < nl_; ++l) {
        rows[static_cast<std::size_t>(l)] = l;
        el[static_cast<std::size_t>(l)] = -g.links[static_cast<std::size_t>(l)].capacity;
      }
      m_.addColumn(nl_, rows.data(), el.data(), 0.0, COIN_DBL_MAX, 1.0);
      cols_.push_back({SIZE_MAX, 0});
      for (std::size_t d = 0; d < p.demands.size(); ++d) {
        active_[d].push_back(0);
        for (int l : p.paths[d][0]) fixed_load_[static_cast<std::size_t>(l)] += p.demands[d].volume;
      }
      for (int l = 0; l < nl_; ++l) m_.setRowUpper(l, -fixed_load_[static_cast<std::size_t>(l)]);
    } else {
      for (std::size_t d = 0; d < p.demands.size(); ++d)
        if (!p.paths[d].empty()) add_column(d, 0, p.demands[d].volume);
    }
  }

  // Solves, prices, adds columns; repeats until no column improves. Returns master solves.
  int run() {
    int rounds = 0;
    bool first = true;
    while (true) {
      if (first && o_ == Objective::kMaxFlow) m_.dual();
      else m_.primal(1);  // warm: keep the basis of the previous round
      first = false;
      ++rounds;
      if (m_.status() != 0)
        throw core::InputError(fmt::format("te: column generation master did not solve (CLP status {})", m_.status()));
      if (!price()) break;
    }
    return rounds;
  }

  Allocation extract() const {
    Allocation a;
    a.objective = o_;
    a.flow.assign(p_.demands.size(), {});
    for (std::size_t d = 0; d < p_.demands.size(); ++d) a.flow[d].assign(p_.paths[d].size(), 0.0);
    const double* x = m_.primalColumnSolution();
    for (std::size_t c = 0; c < cols_.size(); ++c)
      if (cols_[c].demand != SIZE_MAX) a.flow[cols_[c].demand][cols_[c].path] = std::max(0.0, x[c]);
    if (o_ == Objective::kMlu)
      for (std::size_t d = 0; d < p_.demands.size(); ++d)
        if (row_of_[d] < 0) a.flow[d][active_[d][0]] = p_.demands[d].volume;
    a.recompute_loads(p_);
    return a;
  }

 private:
  int add_column(std::size_t d, std::size_t path, double upper) {
    std::vector<int> rows;
    std::vector<double> el;
    for (int l : p_.paths[d][path]) {
      rows.push_back(l);
      el.push_back(1.0);
    }
    if (row_of_[d] >= 0) {
      rows.push_back(row_of_[d]);
      el.push_back(1.0);
    }
    m_.addColumn(static_cast<int>(rows.size()), rows.data(), el.data(), 0.0, upper, o_ == Objective::kMlu ? 0.0 : -1.0);
    cols_.push_back({d, path});
    col_of_.emplace(key(d, path), static_cast<int>(cols_.size() - 1));
    active_[d].push_back(path);
    return static_cast<int>(cols_.size() - 1);
  }
  static std::uint64_t key(std::size_t d, std::size_t path) { return (static_cast<std::uint64_t>(d) << 8) | path; }

  // Gives demand d its own row (it is about to use a second path).
  void split(std::size_t d) {
    const double vol = p_.demands[d].volume;
    const int row = m_.numberRows();
    if (o_ == Objective::kMlu) {
      m_.addRow(0, nullptr, nullptr, vol, vol);
      row_of_[d] = row;
      // Its constant load leaves the link bounds; its first path becomes a column.
      const std::size_t p0 = active_[d][0];
      active_[d].clear();
      for (int l : p_.paths[d][p0]) {
        fixed_load_[static_cast<std::size_t>(l)] -= vol;
        m_.setRowUpper(l, -fixed_load_[static_cast<std::size_t>(l)]);
      }
      add_column(d, p0, COIN_DBL_MAX);
    } else {
      const int c0 = col_of_.at(key(d, active_[d][0]));
      const int col = c0;
      const double one = 1.0;
      m_.addRow(1, &col, &one, -COIN_DBL_MAX, vol);
      row_of_[d] = row;
      m_.setColumnUpper(c0, COIN_DBL_MAX);
    }
  }

  bool price() {
    const double* y = m_.dualRowSolution();
    const double scale = o_ == Objective::kMlu ? 1.0 : 1.0;
    std::vector<double> w(static_cast<std::size_t>(nl_));
    for (int l = 0; l < nl_; ++l) w[static_cast<std::size_t>(l)] = std::max(0.0, -y[l]);
    std::vector<std::pair<std::size_t, std::size_t>> add;
    for (std::size_t d = 0; d < p_.demands.size(); ++d) {
      const auto& paths = p_.paths[d];
      if (paths.size() < 2) continue;
      // What the demand's current paths cost, per unit of flow, under the duals.
      double current;
      if (row_of_[d] >= 0) {
        current = -y[row_of_[d]];  // the demand row's dual equals its paths' price
        if (o_ == Objective::kMaxFlow) current = 1.0 - current;
      } else if (o_ == Objective::kMlu) {
        current = 0;
        for (int l : paths[active_[d][0]]) current += w[static_cast<std::size_t>(l)];
      } else {
        current = 1.0;  // a lone column at its bound: worth adding a path if it costs < 1
      }
      double best = INFINITY;
      std::size_t arg = SIZE_MAX;
      for (std::size_t q = 0; q < paths.size(); ++q) {
        if (std::find(active_[d].begin(), active_[d].end(), q) != active_[d].end()) continue;
        double c = 0;
        for (int l : paths[q]) c += w[static_cast<std::size_t>(l)];
        if (c < best) best = c, arg = q;
      }
      if (arg != SIZE_MAX && best < current - 1e-9 * scale * (1 + std::fabs(current))) add.emplace_back(d, arg);
    }
    for (auto [d, q] : add) {
      if (row_of_[d] < 0) split(d);
      add_column(d, q, COIN_DBL_MAX);
    }
    return !add.empty();
  }

  const Problem& p_;
  Objective o_;
  int nl_ = 0;
  ClpSimplex m_;
  std::vector<Column> cols_;
  std::unordered_map<std::uint64_t, int> col_of_;
  std::vector<std::vector<std::size_t>> active_;
  std::vector<int> row_of_;
  std::vector<double> fixed_load_;
};

}  // namespace

Allocation solve_column_generation(const Problem& p, Objective o) {
  validate(p, o);
  const auto t0 = std::chrono::steady_clock::now();
  Master master(p, o);
  const int rounds = master.run();
  Allocation a = master.extract();
  a.method = "fast";
  a.iterations = rounds;
  a.value = o == Objective::kMlu ? a.mlu(*p.graph) : a.total();
  a.bound = a.value;
  a.solve_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return a;
}

}  // namespace infergrid::te
