#include "workload/generator.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

#include "core/csv.hpp"
#include "core/error.hpp"
#include "core/paths.hpp"

namespace infergrid::workload {

namespace {
std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}
}  // namespace

LengthDist LengthDist::parse(const std::string& spec, const std::string& flag) {
  const auto parts = split(spec, ':');
  auto num = [&](std::size_t i) {
    double v = 0;
    if (i >= parts.size() || !core::parse_double(parts[i], v) || v <= 0)
      core::fail_flag(flag, fmt::format("bad distribution '{}' (fixed:N, uniform:A:B, "
                                        "lognormal:MEAN:CV, exponential:MEAN)", spec));
    return v;
  };
  LengthDist d;
  const std::string kind = parts.empty() ? "" : parts[0];
  std::size_t want = 0;
  if (kind == "fixed") {
    d.kind = Kind::kFixed, d.a = num(1), want = 2;
  } else if (kind == "uniform") {
    d.kind = Kind::kUniform, d.a = num(1), d.b = num(2), want = 3;
    if (d.b < d.a) core::fail_flag(flag, "uniform:A:B needs A <= B");
  } else if (kind == "lognormal") {
    d.kind = Kind::kLogNormal, d.a = num(1), d.b = num(2), want = 3;
  } else if (kind == "exponential") {
    d.kind = Kind::kExponential, d.a = num(1), want = 2;
  } else if (kind == "servegen" && parts.size() == 2) {
    d.kind = Kind::kEmpirical, want = 2;
    d.quantiles = load_quantiles(core::data_dir() + "/workload/servegen_quantiles.csv", parts[1]);
    d.a = 0;
    for (std::size_t i = 1; i < d.quantiles->size(); ++i) {  // mean of the piecewise-linear law
      const auto& [q0, v0] = (*d.quantiles)[i - 1];
      const auto& [q1, v1] = (*d.quantiles)[i];
      d.a += (q1 - q0) * (v0 + v1) / 2;
    }
  } else {
    num(99);
  }
  if (parts.size() != want) num(99);
  return d;
}

std::int32_t LengthDist::sample(core::Rng& rng) const {
  double v = a;
  switch (kind) {
    case Kind::kFixed:
      break;
    case Kind::kUniform:
      v = std::floor(a + (b - a + 1) * rng.uniform());
      break;
    case Kind::kLogNormal: {
      const double s2 = std::log(1 + b * b);
      const double mu = std::log(a) - s2 / 2;
      std::normal_distribution<double> n(mu, std::sqrt(s2));
      v = std::round(std::exp(n(rng)));
      break;
    }
    case Kind::kExponential:
      // Geometric on {1, 2, ...} with mean a: the discrete exponential.
      v = a <= 1 ? 1 : std::ceil(std::log(rng.uniform()) / std::log(1 - 1 / a));
      break;
    case Kind::kEmpirical: {
      const auto& t = *quantiles;
      const double u = rng.uniform();
      auto it = std::lower_bound(t.begin(), t.end(), u,
                                 [](const std::pair<double, double>& e, double x) { return e.first < x; });
      if (it == t.begin()) return static_cast<std::int32_t>(t.front().second);
      if (it == t.end()) return static_cast<std::int32_t>(t.back().second);
      const auto& [q0, v0] = *(it - 1);
      const auto& [q1, v1] = *it;
      v = std::round(v0 + (v1 - v0) * (u - q0) / std::max(1e-12, q1 - q0));
      return static_cast<std::int32_t>(std::clamp(v, 0.0, 10'000'000.0));
    }
  }
  return static_cast<std::int32_t>(std::clamp(v, 1.0, 10'000'000.0));
}

double LengthDist::mean() const {
  switch (kind) {
    case Kind::kUniform:
      return (a + b) / 2;
    default:
      return a;
  }
}

std::shared_ptr<const std::vector<std::pair<double, double>>> load_quantiles(const std::string& path,
                                                                             const std::string& name) {
  core::LineReader in(path);
  std::string line;
  std::vector<std::string> f;
  auto out = std::make_shared<std::vector<std::pair<double, double>>>();
  bool header = false;
  while (in.next(line)) {
    if (line.empty() || line[0] == '#') continue;
    if (!header) {
      header = true;
      continue;
    }
    double q = 0, v = 0;
    if (!core::split_csv(line, f) || f.size() != 3 || !core::parse_double(f[1], q) ||
        !core::parse_double(f[2], v) || q < 0 || q > 1)
      core::fail_input(path, in.line_number(), "q", "expected dist,q,value with 0 <= q <= 1");
    if (f[0] != name) continue;
    if (!out->empty() && q <= out->back().first)
      core::fail_input(path, in.line_number(), "q", "quantiles must increase");
    out->emplace_back(q, v);
  }
  if (out->size() < 2) core::fail_input(path, 0, "dist", fmt::format("no quantile table '{}'", name));
  return out;
}

std::vector<std::pair<double, double>> GeneratorSpec::parse_schedule(const std::string& spec) {
  std::vector<std::pair<double, double>> out;
  for (const auto& item : split(spec, ',')) {
    const auto kv = split(item, ':');
    double t = 0, r = 0;
    if (kv.size() != 2 || !core::parse_double(kv[0], t) || !core::parse_double(kv[1], r) ||
        t < 0 || r < 0 || (!out.empty() && t <= out.back().first))
      core::fail_flag("rate-schedule", fmt::format("bad item '{}' (want increasing SECONDS:RATE "
                                                   "pairs, e.g. 0:10,600:50)", item));
    out.emplace_back(t, r);
  }
  if (out.empty() || out[0].first != 0) core::fail_flag("rate-schedule", "must start at 0");
  double total = 0;
  for (auto& p : out) total += p.second;
  if (total <= 0) core::fail_flag("rate-schedule", "needs a positive rate somewhere");
  return out;
}

namespace {

// Arrivals are a renewal process of unit rate (exponential, or Gamma with the given CV) in
// operational time, mapped through the inverse of the cumulative rate: this gives a Poisson
// process of the scheduled rate when CV = 1, and keeps burstiness otherwise.
class Generator final : public RequestSource {
 public:
  explicit Generator(const GeneratorSpec& s)
      : spec_(s), arrivals_(s.seed, "arrivals"), lengths_(s.seed, "lengths"),
        gamma_(1 / (s.cv * s.cv), s.cv * s.cv) {
    if (spec_.schedule.empty()) spec_.schedule = {{0.0, s.rate}};
    if (!(s.cv > 0)) core::fail_flag("cv", "must be positive");
    if (spec_.schedule.size() == 1 && !(spec_.schedule[0].second > 0))
      core::fail_flag("rate", "must be positive");
  }

  bool next(Request& r) override {
    if (issued_ >= spec_.count) return false;
    const double step = spec_.cv == 1 ? -std::log(arrivals_.uniform()) : gamma_(arrivals_);
    op_time_ += step;
    r = Request{};
    r.id = issued_++;
    r.arrival = core::from_seconds(wall_time(op_time_));
    r.prompt_tokens = spec_.prompt.sample(lengths_);
    r.output_tokens = spec_.output.sample(lengths_);
    return true;
  }
  double progress() const override { return double(issued_) / double(spec_.count); }

 private:
  // Inverse of the cumulative rate Lambda(t); the last piece extends forever.
  double wall_time(double op) {
    const auto& sch = spec_.schedule;
    while (true) {
      const double rate = sch[piece_].second;
      const bool last = piece_ + 1 == sch.size();
      const double len = last ? INFINITY : sch[piece_ + 1].first - sch[piece_].first;
      const double mass = rate * len;
      if (last || op - piece_op_ < mass) {
        if (rate <= 0) return INFINITY;
        return sch[piece_].first + (op - piece_op_) / rate;
      }
      piece_op_ += mass;
      ++piece_;
    }
  }

  GeneratorSpec spec_;
  core::Rng arrivals_, lengths_;
  std::gamma_distribution<double> gamma_;
  std::uint64_t issued_ = 0;
  double op_time_ = 0;
  std::size_t piece_ = 0;
  double piece_op_ = 0;
};

}  // namespace

std::unique_ptr<RequestSource> make_generator(const GeneratorSpec& spec) {
  return std::make_unique<Generator>(spec);
}

}  // namespace infergrid::workload
