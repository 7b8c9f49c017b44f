#include "te/demands.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <queue>
#include <set>

#include "core/csv.hpp"
#include "core/error.hpp"

namespace infergrid::te {

using core::fail_input;

std::vector<Demand> read_demands(const std::string& path, const Graph& g) {
  core::LineReader in(path);
  std::string line;
  std::vector<std::string> f;
  std::vector<Demand> out;
  const int n = static_cast<int>(g.nodes.size());
  int row = 0;
  bool matrix = false, decided = false;
  while (in.next(line)) {
    if (core::trim(line).empty() || line[0] == '#') continue;
    if (!core::split_csv(line, f)) fail_input(path, in.line_number(), "", "unterminated quote");
    if (!decided) {
      decided = true;
      double tmp = 0;
      if (!core::parse_double(f[0], tmp)) continue;  // a header line of the row form
      matrix = static_cast<int>(f.size()) == n && n > 4;
      if (!matrix && (f.size() < 3 || f.size() > 4))
        fail_input(path, in.line_number(), "",
                   fmt::format("expected {} columns (a matrix for {} nodes) or src,dst,volume[,class]", n, n));
    }
    if (matrix) {
      if (static_cast<int>(f.size()) != n)
        fail_input(path, in.line_number(), "", fmt::format("matrix row has {} columns, expected {}", f.size(), n));
      if (row >= n) fail_input(path, in.line_number(), "", fmt::format("matrix has more than {} rows", n));
      for (int c = 0; c < n; ++c) {
        double v = 0;
        if (!core::parse_double(f[static_cast<std::size_t>(c)], v) || v < 0)
          fail_input(path, in.line_number(), fmt::format("column {}", c + 1), "expected a non-negative volume");
        if (v > 0 && c != row) out.push_back(Demand{row, c, v, 0});
      }
      ++row;
    } else {
      if (f.size() < 3 || f.size() > 4)
        fail_input(path, in.line_number(), "", "expected src,dst,volume[,class]");
      std::int64_t s = 0, d = 0, cls = 0;
      double v = 0;
      if (!core::parse_int(f[0], s)) fail_input(path, in.line_number(), "src", "expected a node id");
      if (!core::parse_int(f[1], d)) fail_input(path, in.line_number(), "dst", "expected a node id");
      if (!core::parse_double(f[2], v) || v < 0) fail_input(path, in.line_number(), "volume", "expected a non-negative number");
      if (f.size() == 4 && (!core::parse_int(f[3], cls) || cls < 0 || cls > 100))
        fail_input(path, in.line_number(), "class", "expected a class number 0..100");
      const int si = g.index_of(s), di = g.index_of(d);
      if (si < 0) fail_input(path, in.line_number(), "src", fmt::format("unknown node {}", s));
      if (di < 0) fail_input(path, in.line_number(), "dst", fmt::format("unknown node {}", d));
      if (v > 0 && si != di) out.push_back(Demand{si, di, v, static_cast<int>(cls)});
    }
  }
  if (matrix && row != n) fail_input(path, in.line_number(), "", fmt::format("matrix has {} rows, expected {}", row, n));
  return out;
}

std::vector<Demand> gravity_demands(const Graph& g, double total, std::size_t max_pairs) {
  const std::size_t n = g.nodes.size();
  std::vector<double> w(n, 0);
  for (const auto& l : g.links) w[static_cast<std::size_t>(l.src)] += l.capacity;
  std::vector<Demand> out;
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j)
      if (i != j && w[i] > 0 && w[j] > 0) {
        out.push_back(Demand{static_cast<int>(i), static_cast<int>(j), w[i] * w[j], 0});
        sum += w[i] * w[j];
      }
  if (max_pairs > 0 && out.size() > max_pairs) {
    std::stable_sort(out.begin(), out.end(), [](const Demand& a, const Demand& b) { return a.volume > b.volume; });
    out.resize(max_pairs);
    sum = 0;
    for (const auto& d : out) sum += d.volume;
    std::sort(out.begin(), out.end(), [](const Demand& a, const Demand& b) {
      return std::pair(a.src, a.dst) < std::pair(b.src, b.dst);
    });
  }
  for (auto& d : out) d.volume = d.volume / sum * total;
  return out;
}

namespace {

// Dijkstra from src to dst avoiding banned links and nodes; empty when unreachable.
Path shortest(const Graph& g, int src, int dst, const std::vector<char>& banned_link,
              const std::vector<char>& banned_node, bool by_hops) {
  const std::size_t n = g.nodes.size();
  std::vector<double> dist(n, 1e300);
  std::vector<int> via(n, -1);
  using Item = std::pair<double, int>;
  std::priority_queue<Item, std::vector<Item>, std::greater<>> pq;
  dist[static_cast<std::size_t>(src)] = 0;
  pq.push({0, src});
  while (!pq.empty()) {
    const auto [d, v] = pq.top();
    pq.pop();
    if (d > dist[static_cast<std::size_t>(v)]) continue;
    if (v == dst) break;
    for (int l : g.out[static_cast<std::size_t>(v)]) {
      const auto& link = g.links[static_cast<std::size_t>(l)];
      // Links without capacity carry nothing: no candidate path uses them.
      if (banned_link[static_cast<std::size_t>(l)] || banned_node[static_cast<std::size_t>(link.dst)] ||
          link.capacity <= 0)
        continue;
      const double nd = d + (by_hops ? 1.0 : link.latency_ms + 1e-9);
      if (nd < dist[static_cast<std::size_t>(link.dst)]) {
        dist[static_cast<std::size_t>(link.dst)] = nd;
        via[static_cast<std::size_t>(link.dst)] = l;
        pq.push({nd, link.dst});
      }
    }
  }
  Path p;
  if (via[static_cast<std::size_t>(dst)] < 0) return p;
  for (int v = dst; v != src;) {
    const int l = via[static_cast<std::size_t>(v)];
    p.push_back(l);
    v = g.links[static_cast<std::size_t>(l)].src;
  }
  std::reverse(p.begin(), p.end());
  return p;
}

double cost(const Graph& g, const Path& p, bool by_hops) {
  double c = 0;
  for (int l : p) c += by_hops ? 1.0 : g.links[static_cast<std::size_t>(l)].latency_ms + 1e-9;
  return c;
}

}  // namespace

std::vector<Path> k_shortest_paths(const Graph& g, int src, int dst, int k, bool by_hops) {
  std::vector<char> bl(g.links.size(), 0), bn(g.nodes.size(), 0);
  std::vector<Path> a;
  Path first = shortest(g, src, dst, bl, bn, by_hops);
  if (first.empty()) return a;
  a.push_back(first);
  std::set<std::pair<double, Path>> b;
  while (static_cast<int>(a.size()) < k) {
    const Path& last = a.back();
    for (std::size_t i = 0; i < last.size(); ++i) {
      const int spur = g.links[static_cast<std::size_t>(last[i])].src;
      const Path root(last.begin(), last.begin() + static_cast<long>(i));
      std::fill(bl.begin(), bl.end(), 0);
      std::fill(bn.begin(), bn.end(), 0);
      for (const Path& p : a)
        if (p.size() > i && std::equal(root.begin(), root.end(), p.begin())) bl[static_cast<std::size_t>(p[i])] = 1;
      for (int l : root) bn[static_cast<std::size_t>(g.links[static_cast<std::size_t>(l)].src)] = 1;
      Path spur_path = shortest(g, spur, dst, bl, bn, by_hops);
      if (spur_path.empty()) continue;
      Path total = root;
      total.insert(total.end(), spur_path.begin(), spur_path.end());
      b.insert({cost(g, total, by_hops), total});
    }
    if (b.empty()) break;
    a.push_back(b.begin()->second);
    b.erase(b.begin());
  }
  return a;
}

std::vector<std::vector<Path>> compute_paths(const Graph& g, const std::vector<Demand>& demands, int k,
                                             bool by_hops) {
  std::vector<std::vector<Path>> out;
  out.reserve(demands.size());
  for (const auto& d : demands) out.push_back(k_shortest_paths(g, d.src, d.dst, k, by_hops));
  return out;
}

std::vector<std::vector<Path>> read_paths(const std::string& path, const Graph& g,
                                          const std::vector<Demand>& demands) {
  std::map<std::pair<int, int>, std::vector<std::size_t>> by_pair;
  for (std::size_t i = 0; i < demands.size(); ++i) by_pair[{demands[i].src, demands[i].dst}].push_back(i);
  std::vector<std::vector<Path>> out(demands.size());
  core::LineReader in(path);
  std::string line;
  while (in.next(line)) {
    const auto t = core::trim(line);
    if (t.empty() || t[0] == '#') continue;
    std::vector<int> nodes;
    std::size_t pos = 0;
    int field = 0;
    const std::string s(t);
    while (pos < s.size()) {
      while (pos < s.size() && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == ',')) ++pos;
      if (pos >= s.size()) break;
      std::size_t e = pos;
      while (e < s.size() && s[e] != ' ' && s[e] != '\t' && s[e] != ',') ++e;
      std::int64_t id = 0;
      const std::string name = field == 0 ? "src" : field == 1 ? "dst" : fmt::format("node {}", field - 1);
      if (!core::parse_int(s.substr(pos, e - pos), id)) fail_input(path, in.line_number(), name, "expected a node id");
      const int idx = g.index_of(id);
      if (idx < 0) fail_input(path, in.line_number(), name, fmt::format("unknown node {}", id));
      nodes.push_back(idx);
      ++field;
      pos = e;
    }
    if (nodes.size() < 4) fail_input(path, in.line_number(), "", "expected `src dst n0 n1 ... nk` with at least one hop");
    const int src = nodes[0], dst = nodes[1];
    if (nodes[2] != src || nodes.back() != dst)
      fail_input(path, in.line_number(), "", "the path must start at src and end at dst");
    Path p;
    for (std::size_t i = 2; i + 1 < nodes.size(); ++i) {
      const int l = g.link_between(nodes[i], nodes[i + 1]);
      if (l < 0)
        fail_input(path, in.line_number(), fmt::format("node {}", i - 1),
                   fmt::format("no link from {} to {}", g.nodes[static_cast<std::size_t>(nodes[i])].id,
                               g.nodes[static_cast<std::size_t>(nodes[i + 1])].id));
      p.push_back(l);
    }
    auto it = by_pair.find({src, dst});
    if (it == by_pair.end()) continue;  // a path for a pair without demand
    for (std::size_t d : it->second) out[d].push_back(p);
  }
  return out;
}

}  // namespace infergrid::te
