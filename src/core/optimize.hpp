#pragma once
// Nelder-Mead minimization of a function of N parameters (no derivatives): used to fit the
// engine model's factors and the fiber latency model's. f returns +inf (or any large value)
// where the parameters are infeasible.
#include <algorithm>
#include <array>
#include <cstddef>

namespace infergrid::core {

template <std::size_t N, class F>
std::array<double, N> nelder_mead(const F& f, std::array<double, N> x0, int iters) {
  using Vec = std::array<double, N>;
  std::array<Vec, N + 1> p;
  std::array<double, N + 1> fv;
  p[0] = x0;
  for (std::size_t i = 0; i < N; ++i) {
    p[i + 1] = x0;
    p[i + 1][i] = x0[i] != 0 ? x0[i] * 1.2 : 0.2;
  }
  for (std::size_t i = 0; i <= N; ++i) fv[i] = f(p[i]);
  std::array<std::size_t, N + 1> idx;
  for (int it = 0; it < iters; ++it) {
    for (std::size_t i = 0; i <= N; ++i) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return fv[a] < fv[b]; });
    const std::size_t best = idx[0], worst = idx[N], second = idx[N - 1];
    Vec c{};
    for (std::size_t i = 0; i < N; ++i)
      for (std::size_t j = 0; j < N; ++j) c[j] += p[idx[i]][j] / N;
    auto along = [&](double t) {
      Vec r;
      for (std::size_t j = 0; j < N; ++j) r[j] = c[j] + t * (p[worst][j] - c[j]);
      return r;
    };
    const Vec xr = along(-1);
    const double fr = f(xr);
    if (fr < fv[best]) {
      const Vec xe = along(-2);
      const double fe = f(xe);
      if (fe < fr) p[worst] = xe, fv[worst] = fe;
      else p[worst] = xr, fv[worst] = fr;
    } else if (fr < fv[second]) {
      p[worst] = xr, fv[worst] = fr;
    } else {
      const Vec xc = along(0.5);
      const double fc = f(xc);
      if (fc < fv[worst]) {
        p[worst] = xc, fv[worst] = fc;
      } else {
        for (std::size_t i = 0; i <= N; ++i) {
          if (i == best) continue;
          for (std::size_t j = 0; j < N; ++j) p[i][j] = p[best][j] + 0.5 * (p[i][j] - p[best][j]);
          fv[i] = f(p[i]);
        }
      }
    }
  }
  std::size_t b = 0;
  for (std::size_t i = 1; i <= N; ++i)
    if (fv[i] < fv[b]) b = i;
  return p[b];
}

}  // namespace infergrid::core
