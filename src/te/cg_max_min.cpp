// Tiered max-min fairness by water-filling levels on one persistent column-generation master
// (the first level from the MLU master's optimal basis, cg_master.hpp).
#include "te/cg_master.hpp"

namespace infergrid::te {

using namespace cg_detail;

namespace {

// Tiered max-min fairness by water-filling levels on one persistent column-generation master.
//
// Every demand has a home path (its first, or the path the first level's MLU optimum gives it,
// or the path carrying most of its flow after a rebase). A level raises the served amount of the
// active demands together: a new level column Delta >= 0 adds S_d x Delta to each active demand
// d on its home path, S_d being the demand's span in the current phase (its guarantee, or what
// remains of its volume). Shift columns y_dq move flow of demand d from its home path to path q,
// at most what d currently serves (row: sum_q y_dq - S_d Delta <= served so far). The level
// maximizes Delta; link duals price new shift columns until none improves (an exact LP optimum).
// Demands the optimum prices (home price minus the row's dual > 0) are bottlenecked and freeze;
// a finished level's column is folded into the row bounds, so frozen demands keep their amounts
// but may still be re-routed by later levels, as in the LP's iterative solves.
class LevelMaster {
 public:
  explicit LevelMaster(const Problem& p) : p_(p) {
    const auto& g = *p.graph;
    nl_ = static_cast<int>(g.links.size());
    m_.setLogLevel(0);

    // A row for each link some candidate path crosses, first in the master (demand rows come and
    // go after them): a link no path crosses never carries flow, and every row costs each re-solve
    // (ASN2k's 2,000 largest pairs cross 2,450 of its 8,558 links).
    link_row_.assign(static_cast<std::size_t>(nl_), -1);
    for (const auto& paths : p.paths)
      for (const Path& path : paths)
        for (int l : path) link_row_[static_cast<std::size_t>(l)] = 0;
    for (int l = 0; l < nl_; ++l)
      if (link_row_[static_cast<std::size_t>(l)] == 0) link_row_[static_cast<std::size_t>(l)] = link_rows_++;
    m_.resize(link_rows_, 0);
    // No scaling: the units are already scaled (largest capacity 1000, entries +-1 and the
    // spans), and CLP re-scales the whole matrix at every re-solve otherwise (Cogentco max-min
    // 6.3 s -> 5.9 s, the same optimum).
    m_.scaling(0);
    for (int l = 0; l < nl_; ++l)
      if (link_row_[static_cast<std::size_t>(l)] >= 0)
        m_.setRowBounds(link_row_[static_cast<std::size_t>(l)], -COIN_DBL_MAX, g.links[static_cast<std::size_t>(l)].capacity);
    row_of_.assign(p.demands.size(), -1);
    bounded_.assign(p.demands.size(), 0);
    served_.assign(p.demands.size(), 0.0);
    shifts_.assign(p.demands.size(), {});
    home_.assign(p.demands.size(), 0);
    level_span_.assign(p.demands.size(), 0.0);
  }

  // Fills `active` up to cap[d] of their volumes (a guarantee, or 1 in a tier). Returns levels.
  int fill(std::vector<std::size_t> active, const std::vector<double>& cap) {
    std::vector<double> span(p_.demands.size(), 0.0);
    for (std::size_t d : active) span[d] = std::max(0.0, cap[d] * p_.demands[d].volume - served_[d]);
    active.erase(std::remove_if(active.begin(), active.end(), [&](std::size_t d) { return span[d] <= 1e-12; }),
                 active.end());
    double used = 0;  // fraction of the phase already given by earlier levels
    int levels = 0;
    while (!active.empty() && used < 1 - 1e-12) {
      ++levels;
      Master::Basis mlu;
      const bool first = levels_done_++ == 0;
      if (first) mlu = run_mlu(active, span);  // sets the homes the level column is built on
      const int col = add_level_column(active, span, 1 - used);
      if (first) seed_from_mlu(active, mlu);
      solve_with_pricing();
      // Duals far above the level's own price are cancellation (links that only frozen demands
      // fill get 1e9-1e15 on ASN2k; at most 300x the level column's cost on Kdl, Cogentco and
      // UsCarrier). Under such duals pricing cannot tell a purged demand's useful shift from
      // noise (ASN2k: a level ended 0.6553 where the LP's is 0.6571), so the purged demands come
      // back, the level is solved again, and the master purges no more.
      if (well_scaled_ && largest_link_dual() > 1e6 * std::fabs(m_.objective()[col])) {
        well_scaled_ = false;
        if (unpurge()) solve_with_pricing();
      }
      const double scaled = m_.primalColumnSolution()[col];
      const double delta = scaled / level_scale_;
      used += delta;
      for (std::size_t d : active) served_[d] += span[d] * delta;
      const bool done = used >= 1 - 1e-9;
      std::vector<std::size_t> next;
      if (!done) next = still_rising(active);  // reads the duals: before the fold changes the model
      fold_level_column(col, scaled);
      if (done) break;
      if (debug())
        fmt::print(stderr, "level {}: delta {:.6f}, active {} -> {}, {:.0f} ms\n", levels, delta, active.size(), next.size(),
                   ms_since(t0_));
      active = std::move(next);
      std::vector<char> rising(p_.demands.size(), 0);
      for (std::size_t d : active) rising[d] = 1;
      if (well_scaled_) purge(rising);
      compact(rising);
    }
    return levels;
  }

  Allocation extract() const {
    Allocation a;
    a.objective = Objective::kMaxMin;
    a.flow.assign(p_.demands.size(), {});
    const double* x = m_.primalColumnSolution();
    for (std::size_t d = 0; d < p_.demands.size(); ++d) {
      a.flow[d].assign(p_.paths[d].size(), 0.0);
      if (p_.paths[d].empty()) continue;
      double moved = 0;
      for (const auto& [q, c] : shifts_[d]) {
        const double y = std::max(0.0, x[c]);
        a.flow[d][q] += y;
        moved += y;
      }
      a.flow[d][home_[d]] = std::max(0.0, served_[d] - moved);
    }
    a.recompute_loads(p_);
    return a;
  }

 private:
  // Demands that no longer rise and have one shift column give up their row: the column's upper
  // bound (what the demand serves) takes its place, and the basis shrinks as demands freeze
  // (Cogentco: 11,000 rows would stay to the last level). A demand that rises again, or gets a
  // second shift column, gets a row back (restore_row).
  void compact(const std::vector<char>& rising) {
    std::vector<int> gone;
    for (std::size_t d = 0; d < p_.demands.size(); ++d) {
      if (row_of_[d] < 0 || shifts_[d].size() != 1 || rising[d]) continue;
      gone.push_back(row_of_[d]);
      m_.setColumnUpper(shifts_[d][0].second, served_[d]);
      row_of_[d] = -1;
      bounded_[d] = 1;
    }
    delete_rows(gone);
  }

  // A frozen demand whose shift columns all carry nothing (nonbasic at zero: its flow is all home,
  // often after rebase) drops them and its row: it becomes a constant load on its home links.
  // Pricing brings a shift back if a later level's duals ask it to make room. The master then
  // holds only the demands that split (Kdl max-min: ~4,000 instead of ~6,000 rows at the last
  // levels, 0.14 ms instead of 0.22 ms a simplex step, 1.1 s instead of 1.5 s of simplex).
  void purge(const std::vector<char>& rising) {
    const double* x = m_.primalColumnSolution();
    std::vector<int> cols, rows;
    for (std::size_t d = 0; d < p_.demands.size(); ++d) {
      if (rising[d] || row_of_[d] < 0 || m_.getRowStatus(row_of_[d]) != ClpSimplex::basic) continue;
      const auto& s = shifts_[d];
      if (!std::all_of(s.begin(), s.end(), [&](const auto& qc) {
            return m_.getColumnStatus(qc.second) != ClpSimplex::basic && x[qc.second] <= 1e-12;
          }))
        continue;
      for (const auto& [q, c] : s) {
        cols.push_back(c);
        purged_.emplace_back(d, q);
      }
      shifts_[d].clear();
      rows.push_back(row_of_[d]);
      row_of_[d] = -1;
    }
    delete_columns(cols);
    delete_rows(rows);
  }

  // Gives the purged demands that have not come back their rows and shift columns again (at
  // zero, nonbasic: the basis stays valid). Returns whether any came back.
  bool unpurge() {
    std::vector<std::pair<std::size_t, std::size_t>> back;
    for (const auto& dq : purged_) {
      const std::size_t d = dq.first, q = dq.second;
      if (row_of_[d] < 0 && !bounded_[d] && q != home_[d] &&
          std::none_of(shifts_[d].begin(), shifts_[d].end(), [&](const auto& s) { return s.first == q; }))
        back.push_back(dq);
    }
    purged_.clear();
    std::sort(back.begin(), back.end());
    back.erase(std::unique(back.begin(), back.end()), back.end());
    add_shifts(back);
    if (debug()) fmt::print(stderr, "unpurged {} shift columns\n", back.size());
    return !back.empty();
  }

  // Deletes master columns (shift or level) and renumbers the shift columns left.
  void delete_columns(std::vector<int> cols) {
    if (cols.empty()) return;
    std::sort(cols.begin(), cols.end());
    m_.deleteColumns(static_cast<int>(cols.size()), cols.data());
    for (auto& s : shifts_)
      for (auto& [q, c] : s) c -= static_cast<int>(std::lower_bound(cols.begin(), cols.end(), c) - cols.begin());
  }
  // Deletes demand rows and renumbers the rows left.
  void delete_rows(std::vector<int> rows) {
    if (rows.empty()) return;
    std::sort(rows.begin(), rows.end());
    m_.deleteRows(static_cast<int>(rows.size()), rows.data());
    for (int& r : row_of_)
      if (r >= 0) r -= static_cast<int>(std::lower_bound(rows.begin(), rows.end(), r) - rows.begin());
  }

  // A finished level keeps its amounts: the column's entries times its value move into the row
  // bounds and the column leaves the matrix (every level column kept would hold an entry per
  // loaded link and rising demand row: on Kdl, more entries than all the shift columns, each
  // scanned by every simplex step's pricing).
  void fold_level_column(int col, double value) {
    const CoinPackedMatrix* a = m_.matrix();
    const CoinBigIndex start = a->getVectorStarts()[col];
    const int n = a->getVectorLengths()[col];
    const int* rows = a->getIndices();
    const double* el = a->getElements();
    for (CoinBigIndex k = start; k < start + n; ++k)
      m_.setRowUpper(rows[k], m_.getRowUpper()[rows[k]] - el[k] * value);
    delete_columns({col});
    level_col_ = -1;
  }

  // A split demand whose home path carries nothing (its row binds: every unit it serves is
  // shifted away) takes the path carrying most of its flow as its new home. The same flows in
  // other variables: the old home becomes a shift column, the new home's shift column leaves, and
  // the basis carries over (a path's flow <-> its column, the home's flow <-> the row's slack).
  // With a binding row, a rising demand's basic shifts move with Delta through its row, so Delta
  // couples every such demand in the basis, and a frozen one's basic shift spans both paths'
  // links; after the change of home the row is slack, Delta reaches the demand through its home
  // links only (as U does in the MLU master), and a frozen demand with all its flow home leaves
  // the master (purge). Kdl max-min: 2.5 s -> 1.5 s of simplex, the same served amounts.
  void rebase() {
    const double* x = m_.primalColumnSolution();
    struct Move {
      std::size_t d;
      std::size_t to;  // new home path
      std::vector<std::tuple<std::size_t, double, ClpSimplex::Status>> cols;  // (path, value, status)
      ClpSimplex::Status row_status;
    };
    std::vector<Move> moves;
    std::vector<int> gone;
    // A path's flow at zero is its column at its lower bound, or the row at its upper bound.
    auto as_row = [](ClpSimplex::Status st) {
      return st == ClpSimplex::basic ? st : st == ClpSimplex::atLowerBound ? ClpSimplex::atUpperBound : ClpSimplex::superBasic;
    };
    auto as_column = [](ClpSimplex::Status st) {
      return st == ClpSimplex::basic ? st : st == ClpSimplex::atUpperBound ? ClpSimplex::atLowerBound : ClpSimplex::superBasic;
    };
    for (std::size_t d = 0; d < p_.demands.size(); ++d) {
      if (row_of_[d] < 0 || shifts_[d].empty() || served_[d] <= 0) continue;
      double moved = 0, most = 0;
      std::size_t best = SIZE_MAX;
      for (const auto& [q, c] : shifts_[d]) {
        moved += x[c];
        if (x[c] > most) most = x[c], best = q;
      }
      const double home_flow = served_[d] - moved;
      if (best == SIZE_MAX || home_flow > 1e-9 * served_[d] || most <= 1e-9 * served_[d]) continue;
      Move mv{d, best, {}, ClpSimplex::basic};
      // The old home: its flow and the row slack's status.
      mv.cols.emplace_back(home_[d], std::max(0.0, home_flow), as_column(m_.getRowStatus(row_of_[d])));
      for (const auto& [q, c] : shifts_[d]) {
        gone.push_back(c);
        if (q == best) {
          mv.row_status = as_row(m_.getColumnStatus(c));  // the new home's flow is the row's slack
        } else {
          mv.cols.emplace_back(q, x[c], m_.getColumnStatus(c));
        }
      }
      moves.push_back(std::move(mv));
    }
    if (moves.empty()) return;
    delete_columns(gone);
    std::vector<std::pair<std::size_t, std::size_t>> add;
    for (const auto& mv : moves) {
      const std::size_t d = mv.d;
      shifts_[d].clear();
      // What it served moves from the old home's links to the new home's (link row bounds).
      for (int l : p_.paths[d][home_[d]]) {
        m_.setRowUpper(row(l), m_.getRowUpper()[row(l)] + served_[d]);
      }
      for (int l : p_.paths[d][mv.to]) {
        m_.setRowUpper(row(l), m_.getRowUpper()[row(l)] - served_[d]);
      }
      home_[d] = mv.to;
      m_.setRowStatus(row_of_[d], mv.row_status);
      for (const auto& [q, v, st] : mv.cols) add.emplace_back(d, q);
    }
    const int first = m_.numberColumns();
    add_shifts(add);
    int c = first;
    double* xs = m_.primalColumnSolution();
    for (const auto& mv : moves)
      for (const auto& [q, v, st] : mv.cols) {
        m_.setColumnStatus(c, st);
        xs[c] = v;
        ++c;
      }
    if (debug()) fmt::print(stderr, "rebased {} demands\n", moves.size());
  }

  // Gives a bounded demand its row back (sum of its shifts <= what it serves), its column unbounded.
  void restore_row(std::size_t d) {
    const int col = shifts_[d][0].second;
    const double one = 1.0;
    m_.addRow(1, &col, &one, -COIN_DBL_MAX, served_[d]);
    m_.setColumnUpper(col, COIN_DBL_MAX);
    row_of_[d] = m_.numberRows() - 1;
    bounded_[d] = 0;
  }

  int add_level_column(const std::vector<std::size_t>& active, const std::vector<double>& span, double upper) {
    for (std::size_t d : active)
      if (bounded_[d]) restore_row(d);
    if (levels_done_ > 0) rebase();
    std::vector<double> coef(static_cast<std::size_t>(nl_), 0.0);
    std::vector<int> rows;
    std::vector<double> el;
    for (std::size_t d : active) {
      for (int l : p_.paths[d][home_[d]]) coef[static_cast<std::size_t>(l)] += span[d];
      if (row_of_[d] >= 0) {
        rows.push_back(row_of_[d]);
        el.push_back(-span[d]);
      }
    }
    for (int l = 0; l < nl_; ++l)
      if (coef[static_cast<std::size_t>(l)] != 0) {
        rows.push_back(row(l));
        el.push_back(coef[static_cast<std::size_t>(l)]);
      }
    // The column is Delta x K, K its largest link entry, so that its entries are at most 1 like
    // every other entry of the master (unscaled, a heavy load put 1e5 beside the shifts' 1 and
    // CLP's tolerances then let a level end short: a random graph at 2e6 of gravity demand).
    level_scale_ = 1;
    for (double c : coef) level_scale_ = std::max(level_scale_, c);
    for (double& e : el) e /= level_scale_;
    // The objective is the level's throughput (Delta x total span), not Delta: with Delta's
    // coefficient 1 the duals are the total span times smaller (ASN2k: 1e-7, CLP's own dual
    // tolerance), and pricing and freezing read noise.
    double total = 0;
    for (std::size_t d : active) total += span[d];
    m_.addColumn(static_cast<int>(rows.size()), rows.data(), el.data(), 0.0, upper * level_scale_,
                 -std::max(total, 1e-9) / level_scale_);
    const int col = m_.numberColumns() - 1;
    level_col_ = col;  // earlier level columns are folded away (fold_level_column)
    // Only the demands this level raises have a coefficient in it.
    std::fill(level_span_.begin(), level_span_.end(), 0.0);
    for (std::size_t d : active) level_span_[d] = span[d];
    return col;
  }

  // The first level of a fresh master raises every demand from zero together: the largest Delta
  // is 1 / MLU of the spans (max concurrent flow), and the MLU master finds it about twice as fast
  // as this one (its U column touches only link rows, where Delta also enters every split
  // demand's row, so each simplex step here works on a denser basis). Its columns and basis carry
  // over: a used path is a shift column, a basic home path a basic demand row, a tight link a
  // tight link, U is Delta.
  // Runs the MLU master on the first level's spans, seeded with the potential method's routing
  // (the paths carrying at least a fifth of a demand: Kdl 2 rounds and 0.1 s instead of 27
  // rounds and 0.6 s from first paths), and makes each demand's home a path the MLU optimum uses.
  Master::Basis run_mlu(const std::vector<std::size_t>& active, const std::vector<double>& span) {
    Problem sub;
    sub.graph = p_.graph;
    for (std::size_t d : active) {
      Demand dm = p_.demands[d];
      dm.volume = span[d];
      sub.demands.push_back(dm);
      sub.paths.push_back(p_.paths[d]);
    }
    Allocation seed = solve_potential(sub, Objective::kMlu, 0.01, 300, nullptr, nullptr);
    for (std::size_t d = 0; d < seed.flow.size(); ++d)
      for (double& x : seed.flow[d])
        if (x < 0.2 * sub.demands[d].volume) x = 0;
    Master mlu(sub, Objective::kMlu, &seed);
    mlu.run();
    Master::Basis b = mlu.basis();
    std::vector<char> has_first(active.size(), 0);
    for (const auto& c : b.columns)
      if (c.path == 0) has_first[c.demand] = 1;
    for (std::size_t i = 0; i < active.size(); ++i) home_[active[i]] = b.single[i];  // SIZE_MAX: split, set below
    for (const auto& c : b.columns)
      if (home_[active[c.demand]] == SIZE_MAX || (has_first[c.demand] && c.path == 0)) home_[active[c.demand]] = c.path;
    return b;
  }

  // The MLU optimum's columns and basis in the level master: a used path other than the home is
  // a shift column, the home's status is the demand row's, a tight link a tight link, U is Delta.
  void seed_from_mlu(const std::vector<std::size_t>& active, const Master::Basis& b) {
    std::vector<std::pair<std::size_t, std::size_t>> shifts;
    for (const auto& c : b.columns)
      if (c.path != home_[active[c.demand]]) shifts.emplace_back(active[c.demand], c.path);
    add_shifts(shifts);
    if (debug()) fmt::print(stderr, "level 1 from MLU {:.6f}: {} shift columns, {:.0f} ms\n", b.u, shifts.size(), ms_since(t0_));
    if (b.u <= 1) return;  // Delta reaches its cap: the simplex finds that basis
    m_.createStatus();  // a fresh model has no status arrays yet
    m_.setColumnStatus(level_col_, ClpSimplex::basic);
    for (int l = 0; l < nl_; ++l)
      if (link_row_[static_cast<std::size_t>(l)] >= 0)
        m_.setRowStatus(row(l), b.link_basic[static_cast<std::size_t>(l)] ? ClpSimplex::basic : ClpSimplex::atUpperBound);
    for (std::size_t i = 0; i < b.columns.size(); ++i) {
      const std::size_t d = active[b.columns[i].demand];
      if (b.columns[i].path == home_[d]) {
        m_.setRowStatus(row_of_[d], b.basic[i] ? ClpSimplex::basic : ClpSimplex::atUpperBound);
      } else {
        for (const auto& [q, c] : shifts_[d])
          if (q == b.columns[i].path) m_.setColumnStatus(c, b.basic[i] ? ClpSimplex::basic : ClpSimplex::atLowerBound);
      }
    }
    seeded_ = true;
  }

  void solve_with_pricing() {
    while (true) {
      const auto tp = std::chrono::steady_clock::now();
      m_.primal(seeded_ ? 0 : 1);  // warm from the previous basis (values pass), or from the seed
      const double primal_ms = ms_since(tp);
      seeded_ = false;
      // Every level LP is feasible (Delta = 0 keeps the last solution), yet from a warm basis CLP
      // can end "infeasible" by 1e-7..1e-6 when capacities span two orders of magnitude (ASN2k:
      // 250 to 32,750). A solve from the slack basis finds the feasible point; failing that, the
      // tolerance widens, up to 1e-5 in units where the largest capacity is 1000.
      if (m_.status() == 1) resolve_from_slack(m_);
      if (m_.status() != 0)
        throw core::InputError(fmt::format("te: max-min master did not solve (CLP status {}, infeasibility {:g})", m_.status(),
                                           m_.sumPrimalInfeasibilities()));
      const auto tq = std::chrono::steady_clock::now();
      reprice();
      const bool more = price();
      if (debug())
        fmt::print(stderr, "level round: {} rows, {} cols, {} iterations, objective {:.6f}, {:.0f} ms (primal {:.1f} ms, pricing {:.1f} ms)\n",
                   m_.numberRows(), m_.numberColumns(), m_.numberIterations(), -m_.objectiveValue(), ms_since(t0_), primal_ms,
                   ms_since(tq));
      if (!more) break;
    }
  }

  double largest_link_dual() const {
    const double* y = m_.dualRowSolution();
    double out = 0;
    for (int r = 0; r < link_rows_; ++r) out = std::max(out, std::fabs(y[r]));
    return out;
  }

  std::vector<double> link_prices() const {
    const double* y = m_.dualRowSolution();
    std::vector<double> w(static_cast<std::size_t>(nl_));
    for (int l = 0; l < nl_; ++l) w[static_cast<std::size_t>(l)] = link_row_[static_cast<std::size_t>(l)] >= 0 ? std::max(0.0, -y[row(l)]) : 0.0;
    return w;
  }

  // After each solve: the link prices, every path's price under them, and the demands whose home
  // path crosses a priced link, in increasing order (the others have a free home path, so no
  // column can improve them and raising them costs nothing). Pricing and freezing read these.
  void reprice() {
    w_ = link_prices();
    priced_.clear();
    for (std::size_t d : prices_.update(w_))
      if (prices_.cost(d, home_[d]) > 0) priced_.push_back(d);
  }

  // The active demands the level's optimum does not price: they rise in the next level. Demands
  // whose price is above the duals' rounding freeze; if none is (every bottleneck price lost in
  // it), the raw prices decide; if none of those either, everyone freezes.
  std::vector<std::size_t> still_rising(const std::vector<std::size_t>& active) {
    std::vector<std::size_t> next;
    for (const bool careful : {true, false}) {
      const auto price = home_prices(careful);
      double pmax = 0;
      for (std::size_t d : active) pmax = std::max(pmax, price[d]);
      next.clear();
      for (std::size_t d : active)
        if (price[d] <= 1e-9 * (1 + pmax)) next.push_back(d);
      if (next.size() < active.size()) return next;
    }
    return {};  // degenerate duals: freeze everyone
  }

  // What a demand's own limit costs: its row's dual, or for a bounded demand the reduced cost of
  // its one shift column at its bound.
  double limit_price(std::size_t d, const double* y) const {
    if (row_of_[d] >= 0) return std::max(0.0, -y[row_of_[d]]);
    return bounded_[d] ? std::max(0.0, -m_.dualColumnSolution()[shifts_[d][0].second]) : 0.0;
  }

  // What raising a demand's amount would cost the level, per unit.
  std::vector<double> home_prices(bool careful) const {
    const double* y = m_.dualRowSolution();
    std::vector<double> out(p_.demands.size(), 0.0);
    // Every dual carries the rounding of the largest: a price under 1e-13 of it is noise.
    double floor = 0;
    for (int r = 0; r < m_.numberRows(); ++r) floor = std::max(floor, std::fabs(y[r]));
    floor *= 1e-13;
    for (std::size_t d : priced_) {
      const double home = prices_.cost(d, home_[d]);
      const double rho = limit_price(d, y);  // active demands are never bounded (restore_row)
      // Home and rho can be huge and equal (links that only frozen demands fill get arbitrary
      // duals: 7e9 on ASN2k) and then their difference is rounding (2^-20 there): such a demand
      // is not priced.
      const double c = home - rho;
      out[d] = !careful || (c > 1e-9 * (home + rho) && c > floor) ? c : 0.0;
    }
    return out;
  }

  bool price() {
    const double* y = m_.dualRowSolution();
    std::vector<std::tuple<double, std::size_t, std::size_t>> add;
    for (std::size_t d : priced_) {
      const auto& paths = p_.paths[d];
      if (paths.size() < 2) continue;
      if (served_[d] <= 0 && level_span_[d] <= 0) continue;  // nothing to move
      const double home = prices_.cost(d, home_[d]);  // positive: reprice keeps only priced homes
      const double rho = limit_price(d, y);
      double best = INFINITY;
      std::size_t arg = SIZE_MAX;
      for (std::size_t q = 0; q < paths.size(); ++q) {
        if (q == home_[d]) continue;
        if (std::any_of(shifts_[d].begin(), shifts_[d].end(), [&](const auto& s) { return s.first == q; })) continue;
        const double c = prices_.cost(d, q);
        if (c < best) best = c, arg = q;
      }
      if (arg == SIZE_MAX || best + rho - home >= 0) continue;
      // The reduced cost over the links the two paths do not share, so that links both cross
      // (whose prices can be huge: 1e11 on ASN2k) cancel exactly; the tolerance scales with the
      // prices summed, not with the home path's whole price.
      double rc = rho, scale = rho;
      const Path& from = paths[home_[d]];
      const Path& to = paths[arg];
      for (int l : to)
        if (std::find(from.begin(), from.end(), l) == from.end()) rc += w_[static_cast<std::size_t>(l)], scale += w_[static_cast<std::size_t>(l)];
      for (int l : from)
        if (std::find(to.begin(), to.end(), l) == to.end()) rc -= w_[static_cast<std::size_t>(l)], scale += w_[static_cast<std::size_t>(l)];
      if (rc < -1e-9 * (1 + scale)) add.emplace_back(rc * p_.demands[d].volume, d, arg);
    }
    const std::size_t per_round = columns_per_round(500);
    if (add.size() > per_round) {
      std::partial_sort(add.begin(), add.begin() + static_cast<long>(per_round), add.end());
      add.resize(per_round);
    }
    std::vector<std::pair<std::size_t, std::size_t>> shifts;
    for (const auto& [gain, d, q] : add) shifts.emplace_back(d, q);
    add_shifts(shifts);
    return !add.empty();
  }

  // Adds shift columns (demand, path), with the rows of demands that split now: rows first,
  // then columns, each in one call (CLP copies its matrix on every addRow / addColumn).
  void add_shifts(const std::vector<std::pair<std::size_t, std::size_t>>& add) {
    for (const auto& [d, q] : add)
      if (bounded_[d]) restore_row(d);
    std::vector<CoinBigIndex> starts{0};
    std::vector<int> index;
    std::vector<double> el, lo, hi;
    int next_row = m_.numberRows();
    for (const auto& [d, q] : add) {
      if (row_of_[d] >= 0) continue;
      // Row: sum_q y_dq - span_d x Delta_current <= served before this level.
      if (level_span_[d] > 0) {
        index.push_back(level_col_);
        el.push_back(-level_span_[d] / level_scale_);
      }
      starts.push_back(static_cast<CoinBigIndex>(index.size()));
      lo.push_back(-COIN_DBL_MAX);
      hi.push_back(served_[d]);
      row_of_[d] = next_row++;
    }
    if (lo.size() > 0) m_.addRows(static_cast<int>(lo.size()), lo.data(), hi.data(), starts.data(), index.data(), el.data());
    starts.assign(1, 0);
    index.clear();
    el.clear();
    lo.clear();
    hi.clear();
    std::vector<double> obj;
    int next_col = m_.numberColumns();
    for (const auto& [d, q] : add) {
      // Moves flow from the home path to path q: -1 on links only home uses, +1 on links only q uses.
      const Path& home = p_.paths[d][home_[d]];
      const Path& to = p_.paths[d][q];
      for (int l : home)
        if (std::find(to.begin(), to.end(), l) == to.end()) index.push_back(row(l)), el.push_back(-1.0);
      for (int l : to)
        if (std::find(home.begin(), home.end(), l) == home.end()) index.push_back(row(l)), el.push_back(1.0);
      index.push_back(row_of_[d]);
      el.push_back(1.0);
      starts.push_back(static_cast<CoinBigIndex>(index.size()));
      lo.push_back(0.0);
      hi.push_back(COIN_DBL_MAX);
      obj.push_back(0.0);
      shifts_[d].emplace_back(q, next_col++);
    }
    if (lo.size() > 0)
      m_.addColumns(static_cast<int>(lo.size()), lo.data(), hi.data(), obj.data(), starts.data(), index.data(), el.data());
  }

  const Problem& p_;
  int nl_ = 0;
  std::vector<int> link_row_;  // per link: its master row (the first link_rows_ rows), -1 if no path crosses it
  int link_rows_ = 0;
  int row(int l) const { return link_row_[static_cast<std::size_t>(l)]; }
  ClpSimplex m_;
  std::vector<int> row_of_;
  std::vector<char> bounded_;   // one shift column, bounded instead of a row (compact)
  std::vector<double> served_;  // amount fixed by finished levels
  std::vector<std::vector<std::pair<std::size_t, int>>> shifts_;  // (path, column)
  int level_col_ = -1;
  int levels_done_ = 0;
  bool seeded_ = false;  // the next solve starts from the basis seed_from_mlu set
  bool well_scaled_ = true;  // no level's duals showed cancellation yet (purge)
  std::vector<std::pair<std::size_t, std::size_t>> purged_;  // (demand, path) shifts purge removed
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
  double level_scale_ = 1;  // the level column is Delta x level_scale_
  std::vector<double> level_span_;
  PathPrices prices_{p_};
  std::vector<double> w_;              // link prices of the last solve (reprice)
  std::vector<std::size_t> priced_;    // demands whose home crosses a priced link (reprice)
  std::vector<std::size_t> home_;             // per demand: its home path (implicit flow)
};

}  // namespace

Allocation solve_max_min_levels(const Problem& p) {
  validate(p, Objective::kMaxMin);
  const auto t0 = std::chrono::steady_clock::now();
  LevelMaster master(p);
  int levels = 0;
  auto members = [&](int cls) {
    std::vector<std::size_t> v;
    for (std::size_t d = 0; d < p.demands.size(); ++d)
      if (p.demands[d].cls == cls && !p.paths[d].empty() && p.demands[d].volume > 0) v.push_back(d);
    return v;
  };
  // Guarantees first, all guaranteed classes together; then the classes in priority order.
  std::vector<double> cap(p.demands.size(), 0.0);
  std::vector<std::size_t> guaranteed;
  for (const auto& [cls, frac] : p.class_guarantee)
    if (frac > 0)
      for (std::size_t d : members(cls)) {
        cap[d] = std::min(frac, 1.0);
        guaranteed.push_back(d);
      }
  if (!guaranteed.empty()) levels += master.fill(guaranteed, cap);
  std::fill(cap.begin(), cap.end(), 1.0);
  std::vector<int> classes;
  for (const auto& d : p.demands) classes.push_back(d.cls);
  std::sort(classes.begin(), classes.end());
  classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
  for (int cls : classes) levels += master.fill(members(cls), cap);
  Allocation a = master.extract();
  a.method = "fast";
  a.value = a.total();
  a.bound = a.value;
  a.iterations = levels;
  a.solve_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return a;
}

}  // namespace infergrid::te
