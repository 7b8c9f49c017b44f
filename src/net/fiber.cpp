#include "net/fiber.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <queue>

#include "core/csv.hpp"
#include "core/error.hpp"
#include "core/optimize.hpp"
#include "core/paths.hpp"

namespace infergrid::net {

namespace {
constexpr double kRttMsPerKm = 0.01;  // light in fiber, there and back (5 us per km each way)
constexpr double kInf = std::numeric_limits<double>::infinity();
std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}
}  // namespace

FiberParams FiberParams::calibrated() {
  // `infergrid geo calibrate` on the shipped Azure and GCP pairs (two thirds; the other third
  // held out): docs/latency.md.
  FiberParams p;
  p.terrestrial_factor = 1.3093;
  p.submarine_factor = 1.2072;
  p.hop_ms = 1.6790;
  p.direct_fixed_ms = 9.001;
  p.hub_fixed_ms = 4.053;
  return p;
}

FiberModel FiberModel::load(const std::string& path, FiberParams p) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    core::fail_input(path, e.mark.line + 1, "", e.what());
  }
  FiberModel m;
  std::map<std::string, int> by_name;
  const auto line = [](const YAML::Node& n) { return static_cast<std::int64_t>(n.Mark().line) + 1; };
  if (!root["hubs"] || !root["hubs"].IsSequence()) core::fail_input(path, 1, "hubs", "expected a list of hubs");
  for (const auto& h : root["hubs"]) {
    FiberHub hub;
    try {
      hub.name = h["name"].as<std::string>();
      hub.pos.lat = h["lat"].as<double>();
      hub.pos.lon = h["lon"].as<double>();
    } catch (const YAML::Exception&) {
      core::fail_input(path, line(h), "hubs", "expected {name, lat, lon}");
    }
    if (!(std::fabs(hub.pos.lat) <= 90 && std::fabs(hub.pos.lon) <= 180))
      core::fail_input(path, line(h), "lat", "expected degrees");
    if (!by_name.emplace(hub.name, static_cast<int>(m.hubs_.size())).second)
      core::fail_input(path, line(h), "name", fmt::format("hub '{}' given twice", hub.name));
    m.hubs_.push_back(hub);
  }
  if (!root["routes"] || !root["routes"].IsSequence()) core::fail_input(path, 1, "routes", "expected a list of routes");
  for (const auto& r : root["routes"]) {
    if (!r.IsSequence() || r.size() != 3) core::fail_input(path, line(r), "routes", "expected [hub, hub, t|s]");
    FiberRoute route;
    for (int k = 0; k < 2; ++k) {
      const auto it = by_name.find(r[k].as<std::string>());
      if (it == by_name.end()) core::fail_input(path, line(r), "routes", fmt::format("unknown hub '{}'", r[k].as<std::string>()));
      (k == 0 ? route.a : route.b) = it->second;
    }
    const std::string kind = r[2].as<std::string>();
    if (kind != "t" && kind != "s") core::fail_input(path, line(r), "routes", "kind must be t (terrestrial) or s (submarine)");
    route.submarine = kind == "s";
    route.km = core::great_circle_km(m.hubs_[static_cast<std::size_t>(route.a)].pos, m.hubs_[static_cast<std::size_t>(route.b)].pos);
    m.routes_.push_back(route);
  }
  m.set_params(p);
  return m;
}

const FiberModel& FiberModel::builtin() {
  static const FiberModel m = load(core::data_dir() + "/net/fiber_routes.yaml");
  return m;
}

void FiberModel::set_params(const FiberParams& p) {
  p_ = p;
  const std::size_t n = hubs_.size();
  std::vector<std::vector<std::pair<int, double>>> adj(n);
  for (const auto& r : routes_) {
    const double ms = r.km * (r.submarine ? p.submarine_factor : p.terrestrial_factor) * kRttMsPerKm + p.hop_ms;
    adj[static_cast<std::size_t>(r.a)].emplace_back(r.b, ms);
    adj[static_cast<std::size_t>(r.b)].emplace_back(r.a, ms);
  }
  dist_.assign(n * n, kInf);
  using Item = std::pair<double, int>;
  for (std::size_t s = 0; s < n; ++s) {
    double* d = &dist_[s * n];
    std::priority_queue<Item, std::vector<Item>, std::greater<Item>> pq;
    d[s] = 0;
    pq.emplace(0.0, static_cast<int>(s));
    while (!pq.empty()) {
      const auto [du, u] = pq.top();
      pq.pop();
      if (du > d[u]) continue;
      for (const auto& [v, w] : adj[static_cast<std::size_t>(u)])
        if (du + w < d[v]) {
          d[v] = du + w;
          pq.emplace(d[v], v);
        }
    }
  }
}

// The hubs an endpoint reaches over land: its nearest, and up to two more no farther than twice
// that plus 100 km (a point does not reach a hub across a sea it has no cable to).
std::vector<int> FiberModel::attach(core::LatLon x) const {
  std::array<std::pair<double, int>, 3> best;
  best.fill({kInf, -1});
  for (std::size_t i = 0; i < hubs_.size(); ++i) {
    const double km = core::great_circle_km(x, hubs_[i].pos);
    if (km < best[2].first) {
      best[2] = {km, static_cast<int>(i)};
      std::sort(best.begin(), best.end());
    }
  }
  std::vector<int> out;
  for (const auto& [km, i] : best)
    if (i >= 0 && km <= 2 * best[0].first + 100) out.push_back(i);
  return out;
}

double FiberModel::rtt_ms(core::LatLon a, core::LatLon b) const {
  const double gc = core::great_circle_km(a, b);
  double best = gc < p_.direct_max_km ? p_.direct_fixed_ms + gc * p_.terrestrial_factor * kRttMsPerKm : kInf;
  const auto ha = attach(a), hb = attach(b);
  const std::size_t n = hubs_.size();
  for (int i : ha) {
    const double to_i = core::great_circle_km(a, hubs_[static_cast<std::size_t>(i)].pos) * p_.terrestrial_factor * kRttMsPerKm;
    for (int j : hb) {
      const double from_j = core::great_circle_km(hubs_[static_cast<std::size_t>(j)].pos, b) * p_.terrestrial_factor * kRttMsPerKm;
      best = std::min(best, p_.hub_fixed_ms + to_i + dist_[static_cast<std::size_t>(i) * n + static_cast<std::size_t>(j)] + from_j);
    }
  }
  return best;
}

std::vector<RttPair> read_rtt_pairs(const std::string& source, const std::string& pairs_csv,
                                    const std::string& locations_csv) {
  std::map<std::string, core::LatLon> where;
  {
    core::LineReader in(locations_csv);
    std::string line;
    std::vector<std::string> f;
    if (!in.next(line)) core::fail_input(locations_csv, 1, "", "empty file");
    while (in.next(line)) {
      if (core::trim(line).empty()) continue;
      if (!core::split_csv(line, f) || f.size() < 3) core::fail_input(locations_csv, in.line_number(), "", "expected name,lat,lon");
      if (core::trim(f[1]).empty()) continue;  // a region without a public location
      core::LatLon p;
      if (!core::parse_double(f[1], p.lat) || std::fabs(p.lat) > 90) core::fail_input(locations_csv, in.line_number(), "lat", "expected degrees");
      if (!core::parse_double(f[2], p.lon) || std::fabs(p.lon) > 180) core::fail_input(locations_csv, in.line_number(), "lon", "expected degrees");
      where[f[0]] = p;
    }
  }
  std::map<std::pair<std::string, std::string>, std::pair<double, int>> acc;
  core::LineReader in(pairs_csv);
  std::string line;
  std::vector<std::string> f;
  if (!in.next(line)) core::fail_input(pairs_csv, 1, "", "empty file");
  while (in.next(line)) {
    if (core::trim(line).empty()) continue;
    if (!core::split_csv(line, f) || f.size() != 3) core::fail_input(pairs_csv, in.line_number(), "", "expected a,b,rtt_ms");
    double ms = 0;
    if (!core::parse_double(f[2], ms) || !(ms > 0 && ms < 1e4)) core::fail_input(pairs_csv, in.line_number(), "rtt_ms", "expected a positive RTT in ms");
    if (f[0] == f[1] || !where.count(f[0]) || !where.count(f[1])) continue;
    auto key = std::minmax(f[0], f[1]);
    auto& a = acc[{key.first, key.second}];
    a.first += ms;
    a.second += 1;
  }
  std::vector<RttPair> out;
  for (const auto& [k, v] : acc) {
    RttPair p;
    p.source = source;
    p.a = k.first;
    p.b = k.second;
    p.pa = where[k.first];
    p.pb = where[k.second];
    p.measured_ms = v.first / v.second;
    p.held_out = fnv1a(source + "|" + p.a + "|" + p.b) % 3 == 0;
    out.push_back(p);
  }
  return out;
}

std::vector<RttPair> shipped_rtt_pairs() {
  const std::string d = core::data_dir() + "/net/rtt/";
  auto out = read_rtt_pairs("azure", d + "azure_p50_2026.csv", d + "azure_p50_2026_locations.csv");
  auto g = read_rtt_pairs("gcp", d + "gcp_perfdash_median_20231127.csv", d + "gcp_perfdash_median_20231127_locations.csv");
  out.insert(out.end(), g.begin(), g.end());
  return out;
}

RttError rtt_error(const FiberModel& m, const std::vector<RttPair>& pairs, bool held_out) {
  std::vector<double> e;
  for (const auto& p : pairs)
    if (p.held_out == held_out) e.push_back(std::fabs(m.rtt_ms(p.pa, p.pb) - p.measured_ms) / p.measured_ms);
  RttError r;
  r.pairs = e.size();
  if (e.empty()) return r;
  std::sort(e.begin(), e.end());
  r.median = e[e.size() / 2];
  r.p90 = e[e.size() * 9 / 10];
  for (double x : e) r.mean += x / static_cast<double>(e.size());
  return r;
}

FiberParams fit_fiber(FiberModel m, const std::vector<RttPair>& pairs) {
  const auto to_params = [&](const std::array<double, 5>& x) {
    FiberParams p = m.params();
    p.terrestrial_factor = x[0];
    p.submarine_factor = x[1];
    p.hop_ms = x[2];
    p.direct_fixed_ms = x[3];
    p.hub_fixed_ms = x[3] + x[4];
    return p;
  };
  const auto objective = [&](const std::array<double, 5>& x) {
    if (x[0] < 1 || x[1] < 1 || x[2] < 0 || x[3] < 0 || x[3] + x[4] < 0) return kInf;
    m.set_params(to_params(x));
    return rtt_error(m, pairs, false).mean;
  };
  const FiberParams s = m.params();
  std::array<double, 5> x{s.terrestrial_factor, s.submarine_factor, s.hop_ms, s.direct_fixed_ms,
                          s.hub_fixed_ms - s.direct_fixed_ms};
  for (int rep = 0; rep < 2; ++rep) x = core::nelder_mead<5>(objective, x, 150);
  return to_params(x);
}

}  // namespace infergrid::net
