#pragma once
// The column-generation master of the path LP (min MLU, max flow), shared by the exact fast
// solver (cg.cpp) and the max-min water-filling levels (cg_max_min.cpp), which take their first
// level from its optimum. Internal to src/te: include from those two files only (it pulls in CLP).
#include <ClpSimplex.hpp>
#include <ClpSolve.hpp>
#include <chrono>
#include <cstdlib>
#include <cmath>
#include <fmt/format.h>

#include <algorithm>
#include <tuple>
#include <unordered_map>

#include "core/error.hpp"
#include "te/solver.hpp"

namespace infergrid::te::cg_detail {

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

struct Column {
  std::size_t demand;
  std::size_t path;
};

// Columns added per pricing round: the most improving ones only, so the master stays small
// and the next round's duals often make the rest unnecessary. The max-min levels take more
// (Cogentco max-min: 8.1 s at 200, 7.3 s at 500, 7.9 s at 3,000).
inline std::size_t columns_per_round(std::size_t fallback) {
  static const char* env = std::getenv("INFERGRID_TE_COLUMNS");
  return env ? static_cast<std::size_t>(std::max(1, std::atoi(env))) : fallback;
}

// INFERGRID_TE_DEBUG prints each master solve to stderr.
inline bool debug() {
  static const bool on = std::getenv("INFERGRID_TE_DEBUG") != nullptr;
  return on;
}
inline double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
// A path's price under link prices w.
inline double path_cost(const std::vector<double>& w, const Path& path) {
  double c = 0;
  for (int l : path) c += w[static_cast<std::size_t>(l)];
  return c;
}

// Path prices under link prices w, by link: only the (demand, path) pairs that cross a priced link
// are summed (a master prices a few dozen links, crossed by a few thousand of the 80,000 candidate
// paths on Kdl; the full scan over every path's links was the largest cost of pricing).
class PathPrices {
 public:
  explicit PathPrices(const Problem& p) : users_(p.graph->links.size()), offset_(p.demands.size() + 1, 0) {
    for (std::size_t d = 0; d < p.demands.size(); ++d) {
      offset_[d + 1] = offset_[d] + p.paths[d].size();
      for (std::size_t q = 0; q < p.paths[d].size(); ++q)
        for (int l : p.paths[d][q]) users_[static_cast<std::size_t>(l)].push_back(static_cast<std::uint32_t>(offset_[d] + q));
    }
    cost_.assign(offset_.back(), 0.0);
    demand_of_.resize(offset_.back());
    for (std::size_t d = 0; d < p.demands.size(); ++d)
      for (std::size_t k = offset_[d]; k < offset_[d + 1]; ++k) demand_of_[k] = static_cast<std::uint32_t>(d);
    mark_.assign(p.demands.size(), 0);
  }
  // Prices every path under w; returns the demands with a priced path, in increasing order.
  const std::vector<std::size_t>& update(const std::vector<double>& w) {
    for (std::size_t d : touched_) {
      std::fill(cost_.begin() + static_cast<long>(offset_[d]), cost_.begin() + static_cast<long>(offset_[d + 1]), 0.0);
      mark_[d] = 0;
    }
    touched_.clear();
    for (std::size_t l = 0; l < users_.size(); ++l) {
      if (!(w[l] > 0)) continue;
      for (std::uint32_t k : users_[l]) {
        cost_[k] += w[l];
        const std::uint32_t d = demand_of_[k];
        if (!mark_[d]) mark_[d] = 1, touched_.push_back(d);
      }
    }
    std::sort(touched_.begin(), touched_.end());
    return touched_;
  }
  double cost(std::size_t d, std::size_t q) const { return cost_[offset_[d] + q]; }

 private:
  std::vector<std::vector<std::uint32_t>> users_;  // per link: the paths (flat index) crossing it
  std::vector<std::size_t> offset_;                // per demand: its first path's flat index
  std::vector<std::uint32_t> demand_of_;
  std::vector<double> cost_;
  std::vector<std::size_t> touched_;
  std::vector<char> mark_;
};

class Master {
 public:
  Master(const Problem& p, Objective o, const Allocation* warm = nullptr) : p_(p), o_(o) {
    // Each demand starts on its first path, or on the first path a previous allocation used.
    auto used = [&](std::size_t d) {
      std::vector<std::size_t> u;
      if (warm && warm->flow.size() == p.demands.size() && warm->flow[d].size() == p.paths[d].size())
        for (std::size_t k = 0; k < p.paths[d].size(); ++k)
          if (warm->flow[d][k] > 0) u.push_back(k);
      if (u.empty()) u.push_back(0);
      return u;
    };
    const auto& g = *p.graph;
    nl_ = static_cast<int>(g.links.size());
    m_.setLogLevel(0);
    active_.assign(p.demands.size(), {});
    row_of_.assign(p.demands.size(), -1);
    fixed_load_.assign(static_cast<std::size_t>(nl_), 0.0);
    link_cols_.assign(static_cast<std::size_t>(nl_), {});
    link_row_.assign(static_cast<std::size_t>(nl_), -1);
    if (o == Objective::kMlu) {
      // Column 0: U. Link rows enter lazily (row generation): at first only the links the
      // first-path routing loads to 90% of its maximum utilization; a link joins when a master
      // solution overloads it (load > U c).
      m_.addColumn(0, nullptr, nullptr, 0.0, COIN_DBL_MAX, 1.0);
      cols_.push_back({SIZE_MAX, 0});
      for (std::size_t d = 0; d < p.demands.size(); ++d) {
        const std::size_t first = used(d)[0];
        active_[d].push_back(first);
        for (int l : p.paths[d][first]) fixed_load_[static_cast<std::size_t>(l)] += p.demands[d].volume;
      }
      double umax = 0;
      for (int l = 0; l < nl_; ++l) umax = std::max(umax, utilization(l, fixed_load_[static_cast<std::size_t>(l)]));
      for (int l = 0; l < nl_; ++l)
        if (utilization(l, fixed_load_[static_cast<std::size_t>(l)]) >= 0.9 * umax && umax > 0) add_link_row(l);
    } else {
      // Max-flow: every link row from the start (rows 0..nl-1).
      m_.resize(nl_, 0);
      for (int l = 0; l < nl_; ++l) {
        m_.setRowBounds(l, -COIN_DBL_MAX, g.links[static_cast<std::size_t>(l)].capacity);
        link_row_[static_cast<std::size_t>(l)] = l;
      }
      for (std::size_t d = 0; d < p.demands.size(); ++d)
        if (!p.paths[d].empty()) add_column(d, used(d)[0], p.demands[d].volume);
    }
    flush();
    if (warm) {
      for (std::size_t d = 0; d < p.demands.size(); ++d) {
        if (p.paths[d].empty()) continue;
        const auto u = used(d);
        if (u.size() < 2) continue;
        split(d);
        for (std::size_t i = 1; i < u.size(); ++i) add_column(d, u[i], COIN_DBL_MAX);
        flush();
      }
    }
  }

  // Solves, prices, adds columns; repeats until no column improves. Returns master solves.
  int run() {
    int rounds = 0;
    bool first = true;
    while (true) {
      if (first) {
        ClpSolve opts;
        opts.setSolveType(o_ == Objective::kMaxFlow ? ClpSolve::useDual : ClpSolve::usePrimalorSprint);
        opts.setPresolveType(o_ == Objective::kMaxFlow ? ClpSolve::presolveOff : ClpSolve::presolveOn);
        m_.initialSolve(opts);
      } else {
        m_.primal(1);  // warm from the previous basis, values pass
      }
      first = false;
      ++rounds;
      if (debug())
        fmt::print(stderr, "round {}: {} rows, {} cols, {} simplex iterations, objective {}, t {:.0f} ms\n", rounds,
                   m_.numberRows(), m_.numberColumns(), m_.numberIterations(), m_.objectiveValue(), ms_since(t_start_));
      if (m_.status() != 0)
        throw core::InputError(fmt::format("te: column generation master did not solve (CLP status {})", m_.status()));
      const std::size_t rows = separate();
      const bool cols = price();
      if (rows == 0 && !cols) break;
    }
    return rounds;
  }

  // After an MLU solve: demands whose flow the optimum prices (raising them would raise U).
  std::vector<char> bottlenecked() const {
    const double* y = m_.dualRowSolution();
    const std::vector<double> w = link_prices();
    double wmax = 0;
    for (double v : w) wmax = std::max(wmax, v);
    const double tol = 1e-9 * (1 + wmax);
    std::vector<char> out(p_.demands.size(), 0);
    for (std::size_t d = 0; d < p_.demands.size(); ++d) {
      if (row_of_[d] >= 0) {
        out[d] = y[row_of_[d]] > tol;
      } else {
        out[d] = path_cost(w, p_.paths[d][active_[d][0]]) > tol;
      }
    }
    return out;
  }

  // An MLU optimum's columns and basis in the master's own terms (the max-min levels start from it).
  struct Basis {
    double u = 0;
    std::vector<Column> columns;    // the columns of demands with a row (path 0 is the home)
    std::vector<char> basic;        // per column
    std::vector<char> link_basic;   // per link; a link without a row counts as basic
    std::vector<std::size_t> single;  // per demand: its one path, or SIZE_MAX if it has a row
  };
  Basis basis() const {
    Basis b;
    b.u = m_.primalColumnSolution()[0];
    for (std::size_t c = 1; c < cols_.size(); ++c) {
      if (row_of_[cols_[c].demand] < 0) continue;
      b.columns.push_back(cols_[c]);
      b.basic.push_back(m_.getColumnStatus(static_cast<int>(c)) == ClpSimplex::basic);
    }
    b.link_basic.assign(static_cast<std::size_t>(nl_), 1);
    for (int l = 0; l < nl_; ++l)
      if (link_row_[static_cast<std::size_t>(l)] >= 0)
        b.link_basic[static_cast<std::size_t>(l)] = m_.getRowStatus(link_row_[static_cast<std::size_t>(l)]) == ClpSimplex::basic;
    b.single.assign(p_.demands.size(), SIZE_MAX);
    for (std::size_t d = 0; d < p_.demands.size(); ++d)
      if (row_of_[d] < 0 && !active_[d].empty()) b.single[d] = active_[d][0];
    return b;
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
  double utilization(int l, double load) const {
    const double c = p_.graph->links[static_cast<std::size_t>(l)].capacity;
    return c > 0 ? load / c : (load > 0 ? INFINITY : 0);
  }

  // MLU: the row of link l, with the U column and every column already crossing l.
  void add_link_row(int l) {
    std::vector<int> cols{0};
    std::vector<double> el{-p_.graph->links[static_cast<std::size_t>(l)].capacity};
    for (int c : link_cols_[static_cast<std::size_t>(l)]) {
      cols.push_back(c);
      el.push_back(1.0);
    }
    m_.addRow(static_cast<int>(cols.size()), cols.data(), el.data(), -COIN_DBL_MAX,
              -fixed_load_[static_cast<std::size_t>(l)]);
    link_row_[static_cast<std::size_t>(l)] = m_.numberRows() - 1;
  }

  // MLU: adds the rows of links the current solution overloads; returns how many.
  std::size_t separate() {
    if (o_ != Objective::kMlu) return 0;
    const double* x = m_.primalColumnSolution();
    const double u = x[0];
    std::vector<double> load(fixed_load_);
    for (std::size_t c = 1; c < cols_.size(); ++c)
      if (x[c] > 0)
        for (int l : p_.paths[cols_[c].demand][cols_[c].path]) load[static_cast<std::size_t>(l)] += x[c];
    std::size_t added = 0;
    for (int l = 0; l < nl_; ++l) {
      if (link_row_[static_cast<std::size_t>(l)] >= 0) continue;
      const double cap = p_.graph->links[static_cast<std::size_t>(l)].capacity;
      if (load[static_cast<std::size_t>(l)] > u * cap + 1e-9 * (1 + u * cap)) {
        add_link_row(l);
        ++added;
      }
    }
    return added;
  }

  int add_column(std::size_t d, std::size_t path, double upper) {
    std::vector<int> rows;
    std::vector<double> el;
    const int col = static_cast<int>(cols_.size());
    for (int l : p_.paths[d][path]) {
      link_cols_[static_cast<std::size_t>(l)].push_back(col);
      if (link_row_[static_cast<std::size_t>(l)] < 0) continue;
      rows.push_back(link_row_[static_cast<std::size_t>(l)]);
      el.push_back(1.0);
    }
    if (row_of_[d] >= 0) {
      rows.push_back(row_of_[d]);
      el.push_back(1.0);
    }
    buf_rows_.insert(buf_rows_.end(), rows.begin(), rows.end());
    buf_el_.insert(buf_el_.end(), el.begin(), el.end());
    buf_start_.push_back(static_cast<CoinBigIndex>(buf_rows_.size()));
    buf_lo_.push_back(0.0);
    buf_hi_.push_back(upper);
    buf_obj_.push_back(o_ == Objective::kMlu ? 0.0 : -1.0);
    cols_.push_back({d, path});
    col_of_.emplace(key(d, path), static_cast<int>(cols_.size() - 1));
    active_[d].push_back(path);
    return static_cast<int>(cols_.size() - 1);
  }
  void flush() {
    const int n = static_cast<int>(buf_lo_.size());
    if (n > 0)
      m_.addColumns(n, buf_lo_.data(), buf_hi_.data(), buf_obj_.data(), buf_start_.data(), buf_rows_.data(),
                    buf_el_.data());
    buf_start_.assign(1, 0);
    buf_rows_.clear();
    buf_el_.clear();
    buf_lo_.clear();
    buf_hi_.clear();
    buf_obj_.clear();
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
        if (link_row_[static_cast<std::size_t>(l)] >= 0)
          m_.setRowUpper(link_row_[static_cast<std::size_t>(l)], -fixed_load_[static_cast<std::size_t>(l)]);
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

  std::vector<double> link_prices() const {
    const double* y = m_.dualRowSolution();
    std::vector<double> w(static_cast<std::size_t>(nl_), 0.0);
    for (int l = 0; l < nl_; ++l)
      if (link_row_[static_cast<std::size_t>(l)] >= 0) w[static_cast<std::size_t>(l)] = std::max(0.0, -y[link_row_[static_cast<std::size_t>(l)]]);
    return w;
  }

  bool price() {
    const double* y = m_.dualRowSolution();
    const std::vector<double> w = link_prices();
    std::vector<std::tuple<double, std::size_t, std::size_t>> add;  // (relative gain, demand, path)
    // MLU: a demand whose paths cross no priced link has nothing to gain (its row's dual, the
    // price of its paths in use, is zero). Max-flow scans every demand (a free path can still
    // beat a demand's bound).
    std::vector<std::size_t> all;
    if (o_ != Objective::kMlu) {
      all.resize(p_.demands.size());
      for (std::size_t d = 0; d < all.size(); ++d) all[d] = d;
    }
    const auto& candidates = o_ == Objective::kMlu ? prices_.update(w) : all;
    auto cost = [&](std::size_t d, std::size_t q) { return o_ == Objective::kMlu ? prices_.cost(d, q) : path_cost(w, p_.paths[d][q]); };
    for (std::size_t d : candidates) {
      const auto& paths = p_.paths[d];
      if (paths.size() < 2) continue;
      // What the demand's current paths cost, per unit of flow, under the duals.
      double current;
      if (row_of_[d] >= 0) {
        // Reduced cost of a new path q: -y_row + sum_q w (MLU), -1 - y_row + sum_q w (max-flow).
        current = o_ == Objective::kMlu ? y[row_of_[d]] : 1.0 + y[row_of_[d]];
      } else if (o_ == Objective::kMlu) {
        current = cost(d, active_[d][0]);
      } else {
        // A lone column with the demand as its bound: the bound's dual is its reduced cost,
        // so a new path must beat min(1, price of the path in use).
        current = std::min(1.0, cost(d, active_[d][0]));
      }
      double best = INFINITY;
      std::size_t arg = SIZE_MAX;
      for (std::size_t q = 0; q < paths.size(); ++q) {
        if (std::find(active_[d].begin(), active_[d].end(), q) != active_[d].end()) continue;
        const double c = cost(d, q);
        if (c < best) best = c, arg = q;
      }
      if (arg != SIZE_MAX && best < current - 1e-9 * (1 + std::fabs(current)))
        add.emplace_back((best - current) * p_.demands[d].volume, d, arg);
    }
    // The most improving columns only: a small master re-solves fast, and the duals of the
    // next round often make the rest unnecessary.
    const std::size_t per_round = columns_per_round(200);
    if (add.size() > per_round) {
      std::partial_sort(add.begin(), add.begin() + static_cast<long>(per_round), add.end());
      add.resize(per_round);
    }
    for (auto [gain, d, q] : add) {
      if (row_of_[d] < 0) split(d);
      add_column(d, q, COIN_DBL_MAX);
    }
    flush();
    return !add.empty();
  }

  const Problem& p_;
  Objective o_;
  PathPrices prices_{p_};
  std::chrono::steady_clock::time_point t_start_ = std::chrono::steady_clock::now();
  int nl_ = 0;
  ClpSimplex m_;
  std::vector<Column> cols_;
  std::unordered_map<std::uint64_t, int> col_of_;
  std::vector<std::vector<std::size_t>> active_;
  std::vector<int> row_of_;
  std::vector<double> fixed_load_;
  std::vector<std::vector<int>> link_cols_;  // per link: the columns crossing it
  std::vector<int> link_row_;                // per link: its master row, -1 while lazy
  std::vector<CoinBigIndex> buf_start_{0};
  std::vector<int> buf_rows_;
  std::vector<double> buf_el_, buf_lo_, buf_hi_, buf_obj_;
};


}  // namespace infergrid::te::cg_detail
