// Fast approximate allocation: an exponential potential minimized by Gauss-Seidel sweeps over
// the demands (Bienstock's potential-function method for multicommodity flow), with a
// certificate from Lagrangian duality and a column-generation fallback (docs/te.md).
//
// MLU: minimize Phi = sum_l exp(beta u_l), u_l = load_l / c_l, a smooth maximum of the
// utilizations (its log / beta is within log(m) / beta of the MLU). One demand at a time moves
// flow from its costliest used path to its cheapest (cost = dPhi/dx = sum over the path of
// exp(beta u_l) / c_l), by the amount that equalizes the two: a one-dimensional convex problem
// solved by safeguarded Newton over the links the two paths do not share. beta grows (x2) once a
// sweep no longer lowers the smooth maximum by a tenth of its smoothing error; between full
// sweeps, sweeps over the demands that touch hot links (exp(beta (u - max)) > e^-6) do most of
// the work. Any link weights w >= 0 give a lower bound on the optimum,
//   sum_d vol_d min_p w(p) / sum_l w_l c_l,
// and the softmax weights of the current point are such weights: the solver stops when the MLU
// found is within eps of the best bound (certified, not hoped for).
//
// Max-flow: maximize sum x - sum_l (lambda_l c_l / beta) exp(beta (u_l - 1)). The penalty's
// derivative on a path, sum_l y_l with y_l = lambda_l exp(beta (u_l - 1)), is its price: a demand
// raises its cheapest path while the price is below 1 and its volume allows, lowers paths priced
// above 1, and shifts flow from dearer to cheaper paths. beta doubles from 16 to 64; after that
// the multipliers move instead (lambda <- y, the exponential multiplier method of Tseng and
// Bertsekas), which drives the prices to the LP's duals without a stiff large beta. Any prices
// y >= 0 bound the optimum from above (Lagrangian duality), and so do t y for every t >= 0:
//   min_t  t sum_l c_l y_l + sum_d vol_d max(0, 1 - t min_p y(p)).
// The point is made feasible by scaling each path by its worst overload (rarely below 1), and
// the solver stops when that throughput is within eps of the bound.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fmt/format.h>

#include "te/solver.hpp"

namespace infergrid::te {

namespace {

using Clock = std::chrono::steady_clock;

class Potential {
 public:
  Potential(const Problem& p, Objective o, const Allocation* warm) : p_(p), o_(o) {
    const auto& g = *p.graph;
    nl_ = g.links.size();
    inv_.resize(nl_);
    cap_.resize(nl_);
    double cmax = 0;
    for (const auto& l : g.links) cmax = std::max(cmax, l.capacity);
    for (std::size_t l = 0; l < nl_; ++l) {
      cap_[l] = g.links[l].capacity;
      // A path over a zero-capacity link (possible only from a paths file) is priced as one
      // of a billionth of the largest capacity.
      inv_[l] = cap_[l] > 0 ? 1 / cap_[l] : 1e9 / std::max(cmax, 1e-300);
    }
    std::size_t entries = 0, paths = 0;
    for (const auto& v : p.paths) {
      paths += v.size();
      for (const Path& path : v) entries += path.size();
    }
    links_.reserve(entries);
    path_start_.reserve(paths + 1);
    dem_start_.reserve(p.demands.size() + 1);
    dem_start_.push_back(0);
    path_start_.push_back(0);
    for (std::size_t d = 0; d < p.demands.size(); ++d) {
      for (const Path& path : p.paths[d]) {
        links_.insert(links_.end(), path.begin(), path.end());
        path_start_.push_back(static_cast<int>(links_.size()));
      }
      dem_start_.push_back(static_cast<int>(path_start_.size() - 1));
    }
    x_.assign(path_start_.size() - 1, 0.0);
    load_.assign(nl_, 0.0);
    e_.assign(nl_, 0.0);
    g_.assign(nl_, 0.0);
    loglam_.assign(nl_, 0.0);
    const bool use_warm = warm && warm->flow.size() == p.demands.size();
    warm_ = use_warm;
    for (std::size_t d = 0; d < p.demands.size(); ++d) {
      const int q0 = dem_start_[d], q1 = dem_start_[d + 1];
      if (q0 == q1) continue;
      const double vol = p.demands[d].volume;
      double sum = 0;
      if (use_warm && warm->flow[d].size() == static_cast<std::size_t>(q1 - q0))
        for (int q = q0; q < q1; ++q) sum += std::max(0.0, warm->flow[d][static_cast<std::size_t>(q - q0)]);
      if (sum > 0) {
        // MLU routes the whole volume: scale the previous split to it. Max-flow keeps amounts.
        const double k = o == Objective::kMlu ? vol / sum : std::min(1.0, vol / sum);
        for (int q = q0; q < q1; ++q)
          x_[static_cast<std::size_t>(q)] = k * std::max(0.0, warm->flow[d][static_cast<std::size_t>(q - q0)]);
      } else if (o == Objective::kMlu) {
        x_[static_cast<std::size_t>(q0)] = vol;
      }
      for (int q = q0; q < q1; ++q)
        for (int i = path_start_[q]; i < path_start_[q + 1]; ++i)
          load_[static_cast<std::size_t>(links_[static_cast<std::size_t>(i)])] += x_[static_cast<std::size_t>(q)];
    }
    logm_ = std::log(static_cast<double>(std::max<std::size_t>(nl_, 2)));
  }

  // Runs until the certified gap is at most eps or the sweep budget is spent; returns whether
  // the result is certified.
  bool run(double eps, int max_sweeps) {
    return o_ == Objective::kMlu ? run_mlu(eps, max_sweeps) : run_max_flow(eps, max_sweeps);
  }

  Allocation extract() const {
    Allocation a;
    a.objective = o_;
    a.flow.assign(p_.demands.size(), {});
    for (std::size_t d = 0; d < p_.demands.size(); ++d)
      for (int q = dem_start_[d]; q < dem_start_[d + 1]; ++q) a.flow[d].push_back(best_x_[static_cast<std::size_t>(q)]);
    a.recompute_loads(p_);
    a.value = o_ == Objective::kMlu ? a.mlu(*p_.graph) : a.total();
    a.bound = bound_;
    a.iterations = sweeps_;
    return a;
  }

 private:
  double util(std::size_t l) const { return load_[l] * inv_[l]; }
  double path_cost(int q) const {
    double s = 0;
    for (int i = path_start_[q]; i < path_start_[q + 1]; ++i) s += g_[static_cast<std::size_t>(links_[static_cast<std::size_t>(i)])];
    return s;
  }
  // Max-flow prices are per unit of flow: y_l (no 1/c, the penalty carries c_l).
  double path_price(int q) const {
    double s = 0;
    for (int i = path_start_[q]; i < path_start_[q + 1]; ++i) s += e_[static_cast<std::size_t>(links_[static_cast<std::size_t>(i)])];
    return s;
  }
  double expo(std::size_t l, double load) const {
    const double z = o_ == Objective::kMlu ? beta_ * (load * inv_[l] - ref_) : beta_ * (load * inv_[l] - 1) + loglam_[l];
    return std::exp(std::min(z, 700.0));
  }
  void set_load(std::size_t l, double load) {
    load_[l] = load;
    e_[l] = expo(l, load);
    g_[l] = e_[l] * inv_[l];
  }
  void refresh() {
    if (o_ == Objective::kMlu) {
      ref_ = 0;
      for (std::size_t l = 0; l < nl_; ++l) ref_ = std::max(ref_, util(l));
    }
    for (std::size_t l = 0; l < nl_; ++l) {
      e_[l] = expo(l, load_[l]);
      g_[l] = e_[l] * inv_[l];
    }
  }
  double sum_e() const {
    double s = 0;
    for (double v : e_) s += v;
    return s;
  }
  double smooth_max() const { return ref_ + std::log(sum_e()) / beta_; }

  // The links of path a not on path b, and of b not on a.
  void symmetric_difference(int a, int b) {
    auto only = [&](int q, int r, std::vector<std::size_t>& out) {
      out.clear();
      for (int i = path_start_[q]; i < path_start_[q + 1]; ++i) {
        const int l = links_[static_cast<std::size_t>(i)];
        bool shared = false;
        for (int j = path_start_[r]; j < path_start_[r + 1] && !shared; ++j) shared = links_[static_cast<std::size_t>(j)] == l;
        if (!shared) out.push_back(static_cast<std::size_t>(l));
      }
    };
    only(a, b, only_a_);
    only(b, a, only_b_);
  }

  // Root in [0, hi] of the increasing function h (with derivative), by Newton safeguarded with
  // bisection (whenever Newton leaves the bracket or failed to halve |h|: alone it crawls down
  // the steep side of an exponential). h(0) < 0 is given; returns hi when h(hi) <= 0, else a
  // point where |h| is negligible against `scale` or, failing that, one with h <= 0 (the potential
  // falls all the way to it).
  template <class H>
  static double root(H&& h, double hi, double scale) {
    double dh;
    if (h(hi, dh) <= 0) return hi;
    double lo = 0, x = 0, v = h(0, dh);
    bool slow = false;
    for (int it = 0; it < 60; ++it) {
      double nx = dh > 0 ? x - v / dh : INFINITY;
      if (slow || !(nx > lo && nx < hi)) nx = 0.5 * (lo + hi);
      const double before = std::fabs(v);
      x = nx;
      v = h(x, dh);
      slow = std::fabs(v) > 0.5 * before;
      if (v <= 0) lo = x;
      else hi = x;
      if (hi - lo <= 1e-9 * hi || std::fabs(v) <= 1e-9 * scale) return x;
    }
    return lo;
  }

  void move(int from, int to, double delta) {
    if (from >= 0) {
      x_[static_cast<std::size_t>(from)] -= delta;
      for (int i = path_start_[from]; i < path_start_[from + 1]; ++i) {
        const auto l = static_cast<std::size_t>(links_[static_cast<std::size_t>(i)]);
        set_load(l, load_[l] - delta);
      }
    }
    if (to >= 0) {
      x_[static_cast<std::size_t>(to)] += delta;
      bool hot = false;
      for (int i = path_start_[to]; i < path_start_[to + 1]; ++i) {
        const auto l = static_cast<std::size_t>(links_[static_cast<std::size_t>(i)]);
        set_load(l, load_[l] + delta);
        hot |= e_[l] > 1e80;
      }
      if (hot) refresh();  // the reference moved far: rescale before anything overflows
    }
  }

  // Moves flow from path a to path b until the two price the links they do not share alike, or
  // all of a's flow has moved: the derivative of the potential along the move is h below (per
  // beta). MLU prices a link at e / c, max-flow at e; `scale` is a's price, for the tolerance.
  void exchange(int a, int b, double scale) {
    symmetric_difference(a, b);
    const bool per_capacity = o_ == Objective::kMlu;
    auto h = [&](double dl, double& dh) {
      double v = 0;
      dh = 0;
      for (std::size_t l : only_b_) {
        const double w = per_capacity ? inv_[l] : 1, e = expo(l, load_[l] + dl);
        v += w * e;
        dh += beta_ * w * inv_[l] * e;
      }
      for (std::size_t l : only_a_) {
        const double w = per_capacity ? inv_[l] : 1, e = expo(l, load_[l] - dl);
        v -= w * e;
        dh += beta_ * w * inv_[l] * e;
      }
      return v;
    };
    const double delta = root(h, x_[static_cast<std::size_t>(a)], scale);
    if (delta > 0) move(a, b, delta);
  }

  // MLU: one Gauss-Seidel step on demand d.
  void step_mlu(std::size_t d) {
    const int q0 = dem_start_[d], q1 = dem_start_[d + 1];
    int a = -1, b = -1;
    double ga = -1, gb = INFINITY;
    for (int q = q0; q < q1; ++q) {
      const double c = path_cost(q);
      if (c < gb) gb = c, b = q;
      if (x_[static_cast<std::size_t>(q)] > 0 && c > ga) ga = c, a = q;
    }
    if (a < 0 || a == b || !(ga - gb > 1e-4 * ga)) return;
    exchange(a, b, ga);
  }

  // Max-flow: one Gauss-Seidel step on demand d (lower an overpriced path, shift to the
  // cheapest, raise the cheapest while it pays).
  void step_max_flow(std::size_t d) {
    const int q0 = dem_start_[d], q1 = dem_start_[d + 1];
    const double vol = p_.demands[d].volume;
    int a = -1, b = -1;
    double ca = -1, cb = INFINITY, total = 0;
    for (int q = q0; q < q1; ++q) {
      const double c = path_price(q);
      total += x_[static_cast<std::size_t>(q)];
      if (c < cb) cb = c, b = q;
      if (x_[static_cast<std::size_t>(q)] > 0 && c > ca) ca = c, a = q;
    }
    auto along = [&](int q, double sign) {  // price of path q after moving sign x delta on it, minus 1
      return [this, q, sign](double dl, double& dh) {
        double v = -1;
        dh = 0;
        for (int i = path_start_[q]; i < path_start_[q + 1]; ++i) {
          const auto l = static_cast<std::size_t>(links_[static_cast<std::size_t>(i)]);
          const double e = expo(l, load_[l] + sign * dl);
          v += e;
          dh += beta_ * inv_[l] * e;
        }
        return sign > 0 ? v : -v;
      };
    };
    if (a >= 0 && ca > 1 + 1e-4) {
      // Lower path a until its price is 1 (h increasing in delta: 1 - price(load - delta)).
      const double delta = root(along(a, -1), x_[static_cast<std::size_t>(a)], 1.0);
      if (delta > 0) {
        move(a, -1, delta);
        total -= delta;
      }
      ca = path_price(a);
      if (a == b) cb = ca;
    }
    if (a >= 0 && a != b && ca - cb > 1e-4 * ca) {
      exchange(a, b, ca);
      cb = path_price(b);
    }
    const double room = vol - total;
    if (cb < 1 - 1e-4 && room > 1e-12 * vol) {
      const double delta = root(along(b, 1), room, 1.0);
      if (delta > 0) move(-1, b, delta);
    }
  }

  // Demands worth visiting between full sweeps: several paths, and a used path over a link
  // whose exponential term is within e^-6 of the largest.
  void collect_active() {
    active_.clear();
    double emax = 0;
    for (double v : e_) emax = std::max(emax, v);
    const double thr = emax * std::exp(-6.0);
    for (std::size_t d = 0; d < p_.demands.size(); ++d) {
      if (dem_start_[d + 1] - dem_start_[d] < 2) continue;
      bool hot = false;
      for (int q = dem_start_[d]; q < dem_start_[d + 1] && !hot; ++q) {
        if (x_[static_cast<std::size_t>(q)] <= 0 && o_ == Objective::kMlu) continue;
        for (int i = path_start_[q]; i < path_start_[q + 1] && !hot; ++i)
          hot = e_[static_cast<std::size_t>(links_[static_cast<std::size_t>(i)])] > thr;
      }
      if (hot) active_.push_back(d);
    }
  }

  // The lower bound on the MLU from the link weights exp(b (u_l - max u)) / c_l at this point.
  double lower_bound(double b) {
    for (std::size_t l = 0; l < nl_; ++l) w_[l] = std::exp(b * (util(l) - ref_));
    double s = 0;
    for (double v : w_) s += v;
    for (std::size_t l = 0; l < nl_; ++l) w_[l] *= inv_[l];
    double lb = 0;
    for (std::size_t d = 0; d < p_.demands.size(); ++d) {
      double m = INFINITY;
      for (int q = dem_start_[d]; q < dem_start_[d + 1]; ++q) {
        double c = 0;
        for (int i = path_start_[q]; i < path_start_[q + 1]; ++i) c += w_[static_cast<std::size_t>(links_[static_cast<std::size_t>(i)])];
        m = std::min(m, c);
      }
      if (dem_start_[d] < dem_start_[d + 1]) lb += p_.demands[d].volume * m;
    }
    return lb / s;
  }

  bool run_mlu(double eps, int max_sweeps) {
    w_.assign(nl_, 0.0);
    double u = 0;
    for (std::size_t l = 0; l < nl_; ++l) u = std::max(u, util(l));
    best_x_ = x_;
    best_ = u;
    if (!(u > 0)) {  // nothing to route
      bound_ = 0;
      return true;
    }
    // The smoothing error starts at a sixteenth of the MLU (log(m) / beta). A warm start
    // starts there too: a finer start is stiff where the failure moved much flow.
    beta_ = 16 * logm_ / u;
    refresh();
    std::vector<std::size_t> movable;
    for (std::size_t d = 0; d < p_.demands.size(); ++d)
      if (dem_start_[d + 1] - dem_start_[d] >= 2 && p_.demands[d].volume > 0) movable.push_back(d);
    double prev = smooth_max();
    for (sweeps_ = 1; sweeps_ <= max_sweeps; ++sweeps_) {
      const double start = smooth_max();
      for (std::size_t d : movable) step_mlu(d);
      // Sweeps over the hot demands while they gain, per demand visited, at least 3% of what
      // the full sweep gained (a larger share certifies Kdl and UsCarrier sooner but leaves
      // ASN2k, whose bound needs well-converged points, uncertified for hundreds of sweeps).
      const double rate = (start - smooth_max()) / static_cast<double>(movable.size());
      collect_active();
      for (int rep = 0; rep < 10 && !active_.empty(); ++rep) {
        const double before = smooth_max();
        for (std::size_t d : active_) step_mlu(d);
        if (before - smooth_max() < 0.03 * rate * static_cast<double>(active_.size())) break;
      }
      // The point's MLU and the bound from its softmax weights.
      u = 0;
      for (std::size_t l = 0; l < nl_; ++l) u = std::max(u, util(l));
      if (u < best_) {
        best_ = u;
        best_x_ = x_;
      }
      refresh();
      bound_ = std::max(bound_, lower_bound(beta_));
      if (std::getenv("INFERGRID_TE_DEBUG"))
        fmt::print(stderr, "sweep {}: beta {:.1f}, mlu {:.6f}, bound {:.6f}, active {}\n", sweeps_, beta_, u, bound_,
                   active_.size());
      if (best_ <= (1 + eps) * bound_) return true;
      const double now = smooth_max();
      const double beta_max = logm_ / (0.5 * eps * best_);
      if (beta_ < beta_max && prev - now < 0.05 * logm_ / beta_) {
        beta_ = std::min(beta_max, 2 * beta_);
        refresh();
        prev = smooth_max();
      } else {
        prev = now;
      }
    }
    sweeps_ = max_sweeps;
    return false;
  }

  // The feasible point nearest x: each path scaled by its worst overload; its throughput.
  double feasible_into(std::vector<double>& out) const {
    out = x_;
    double total = 0;
    for (std::size_t q = 0; q + 1 < path_start_.size(); ++q) {
      double k = 1;
      for (int i = path_start_[q]; i < path_start_[q + 1]; ++i) {
        const auto l = static_cast<std::size_t>(links_[static_cast<std::size_t>(i)]);
        if (load_[l] > cap_[l]) k = std::min(k, cap_[l] > 0 ? cap_[l] / load_[l] : 0.0);
      }
      out[q] *= k;
      total += out[q];
    }
    return total;
  }

  // Max-flow: the least Lagrangian bound over the prices t y, t >= 0, y_l = exp(beta (u_l - 1)):
  //   f(t) = t sum_l c_l y_l + sum_d vol_d max(0, 1 - t m_d),  m_d = min_p y(p),
  // convex and piecewise linear in t; the penalty's prices are right in shape more than in scale.
  double upper_bound() {
    double s = 0;
    for (std::size_t l = 0; l < nl_; ++l) s += cap_[l] * e_[l];
    std::vector<std::pair<double, double>> brk;  // (1 / m_d, vol_d m_d)
    double slope = s, free_volume = 0;           // f'(t) = s - sum over demands with t m_d < 1
    for (std::size_t d = 0; d < p_.demands.size(); ++d) {
      if (dem_start_[d] == dem_start_[d + 1]) continue;
      double m = INFINITY;
      for (int q = dem_start_[d]; q < dem_start_[d + 1]; ++q) m = std::min(m, path_price(q));
      const double vol = p_.demands[d].volume;
      if (m <= 0) {
        free_volume += vol;  // a path of price 0 bounds nothing: the demand counts whole
        continue;
      }
      brk.emplace_back(1 / m, vol * m);
      slope -= vol * m;
    }
    std::sort(brk.begin(), brk.end());
    // Walk the breakpoints while the slope is negative; f at the stop is the bound.
    double t = 0;
    for (const auto& [at, dm] : brk) {
      if (slope >= 0) break;
      t = at;
      slope += dm;
    }
    double f = t * s + free_volume;
    for (const auto& [at, dm] : brk)
      if (t < at) f += dm * (at - t);  // vol (1 - t m) = vol m (1/m - t)
    return f;
  }

  bool run_max_flow(double eps, int max_sweeps) {
    beta_ = warm_ ? 64 : 16;  // a warm start skips the coarse phases
    refresh();
    best_ = feasible_into(best_x_);
    bound_ = INFINITY;
    std::vector<std::size_t> movable;
    for (std::size_t d = 0; d < p_.demands.size(); ++d)
      if (dem_start_[d + 1] > dem_start_[d] && p_.demands[d].volume > 0) movable.push_back(d);
    auto penalized = [&] {  // the objective the sweeps maximize
      double v = 0;
      for (double x : x_) v += x;
      for (std::size_t l = 0; l < nl_; ++l) v -= cap_[l] * e_[l] / beta_;
      return v;
    };
    double prev = penalized();
    std::vector<double> feasible;
    for (sweeps_ = 1; sweeps_ <= max_sweeps; ++sweeps_) {
      for (std::size_t d : movable) step_max_flow(d);
      collect_active();
      for (int rep = 0; rep < 10 && !active_.empty(); ++rep) {
        const double before = penalized();
        for (std::size_t d : active_) step_max_flow(d);
        if (penalized() - before < 0.05 * std::max(1.0, std::fabs(before)) / beta_) break;
      }
      refresh();
      const double value = feasible_into(feasible);
      if (value > best_) {
        best_ = value;
        best_x_ = feasible;
      }
      bound_ = std::min(bound_, upper_bound());
      if (std::getenv("INFERGRID_TE_DEBUG"))
        fmt::print(stderr, "sweep {}: beta {:.1f}, throughput {:.6f}, bound {:.6f}, active {}\n", sweeps_, beta_,
                   value, bound_, active_.size());
      if (best_ >= (1 - eps) * bound_) return true;
      const double now = penalized();
      if (now - prev < 0.05 * std::max(1.0, std::fabs(now)) / beta_) {
        // Converged at this beta: sharpen the penalty up to beta 64, then move the multipliers
        // (lambda_l <- y_l) instead: prices converge to the LP's duals without the stiffness
        // of a large beta (Tseng and Bertsekas' exponential multiplier method).
        if (beta_ < 64) {
          beta_ = 2 * beta_;
        } else {
          for (std::size_t l = 0; l < nl_; ++l)
            loglam_[l] = std::clamp(loglam_[l] + beta_ * (util(l) - 1), -60.0, 20.0);
        }
        refresh();
        prev = penalized();
      } else {
        prev = now;
      }
    }
    sweeps_ = max_sweeps;
    return false;
  }

  const Problem& p_;
  Objective o_;
  std::size_t nl_ = 0;
  std::vector<double> cap_, inv_, load_, e_, g_, w_;
  std::vector<double> loglam_;  // max-flow: log of each link's exponential multiplier  // g = e / c: the MLU price of a link
  std::vector<int> dem_start_, path_start_, links_;
  std::vector<double> x_, best_x_;
  std::vector<std::size_t> only_a_, only_b_, active_;
  double beta_ = 1, ref_ = 0, logm_ = 1;
  double best_ = 0, bound_ = 0;
  int sweeps_ = 0;
  bool warm_ = false;
};

}  // namespace

Allocation solve_potential(const Problem& p, Objective o, double eps, int max_sweeps, const Allocation* warm,
                           bool* certified) {
  validate(p, o);
  const auto t0 = Clock::now();
  Potential pot(p, o, warm);
  const auto t1 = Clock::now();
  const bool ok = pot.run(eps, max_sweeps);
  const auto t2 = Clock::now();
  Allocation a = pot.extract();
  if (std::getenv("INFERGRID_TE_DEBUG"))
    fmt::print(stderr, "setup {:.1f} ms, run {:.1f} ms, extract {:.1f} ms\n",
               std::chrono::duration<double, std::milli>(t1 - t0).count(),
               std::chrono::duration<double, std::milli>(t2 - t1).count(),
               std::chrono::duration<double, std::milli>(Clock::now() - t2).count());
  a.method = "potential";
  a.solve_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (certified) *certified = ok;
  return a;
}

}  // namespace infergrid::te
