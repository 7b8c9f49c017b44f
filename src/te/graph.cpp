#include "te/graph.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "core/geo.hpp"

namespace infergrid::te {

using core::fail_input;

int Graph::index_of(std::int64_t id) const {
  for (std::size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].id == id) return static_cast<int>(i);
  return -1;
}

int Graph::link_between(int src, int dst) const {
  for (int l : out[static_cast<std::size_t>(src)])
    if (links[static_cast<std::size_t>(l)].dst == dst) return l;
  return -1;
}

void Graph::rebuild_adjacency() {
  out.assign(nodes.size(), {});
  for (std::size_t i = 0; i < links.size(); ++i)
    out[static_cast<std::size_t>(links[i].src)].push_back(static_cast<int>(i));
}

namespace {
// Adds directed links; a second link between the same ends merges into the first (parallel
// edges add their capacities).
class LinkMerger {
 public:
  explicit LinkMerger(Graph& g) : g_(g) {}
  void operator()(int a, int b, double cap) {
    auto [it, fresh] = seen_.try_emplace({a, b}, static_cast<int>(g_.links.size()));
    if (fresh) g_.links.push_back(Link{a, b, cap, 0});
    else g_.links[static_cast<std::size_t>(it->second)].capacity += cap;
  }

 private:
  Graph& g_;
  std::map<std::pair<int, int>, int> seen_;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_input(path, 0, "", "cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

void assign_latencies(Graph& g) {
  std::vector<double> known;
  for (auto& l : g.links) {
    const auto& a = g.nodes[static_cast<std::size_t>(l.src)];
    const auto& b = g.nodes[static_cast<std::size_t>(l.dst)];
    l.latency_ms = -1;
    if (a.has_coords && b.has_coords) {
      l.latency_ms = core::great_circle_km({a.lat, a.lon}, {b.lat, b.lon}) * 0.005;
      known.push_back(l.latency_ms);
    }
  }
  double fill = 1.0;
  if (!known.empty()) {
    std::nth_element(known.begin(), known.begin() + static_cast<long>(known.size() / 2), known.end());
    fill = known[known.size() / 2];
  }
  for (auto& l : g.links)
    if (l.latency_ms < 0) l.latency_ms = fill;
}

// ---- GML ------------------------------------------------------------------------------------

namespace {

struct GmlEntry;
using GmlList = std::vector<GmlEntry>;
struct GmlValue {
  enum class Kind { kNumber, kString, kList } kind = Kind::kNumber;
  double number = 0;
  std::string text;
  GmlList list;
  int line = 0;
};
struct GmlEntry {
  std::string key;
  GmlValue value;
};

class GmlParser {
 public:
  GmlParser(const std::string& text, const std::string& name) : s_(text), name_(name) {}
  GmlList parse_top() {
    GmlList out = parse_list(false);
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& field, const std::string& msg) {
    fail_input(name_, line_, field, msg);
  }
  void skip_ws() {
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c == '\n') {
        ++line_;
        ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\r') {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }
  GmlList parse_list(bool nested) {
    GmlList out;
    if (++depth_ > 64) fail("", "lists nested too deeply");
    while (true) {
      skip_ws();
      if (pos_ >= s_.size()) {
        if (nested) fail("", "unterminated list: missing ']'");
        break;
      }
      if (s_[pos_] == ']') {
        if (!nested) fail("", "unexpected ']'");
        ++pos_;
        break;
      }
      const std::size_t k0 = pos_;
      while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_'))
        ++pos_;
      if (pos_ == k0) fail("", fmt::format("expected a key, found '{}'", s_[pos_]));
      std::string key = s_.substr(k0, pos_ - k0);
      skip_ws();
      if (pos_ >= s_.size()) fail(key, "missing value");
      GmlValue v;
      v.line = line_;
      const char c = s_[pos_];
      if (c == '[') {
        ++pos_;
        v.kind = GmlValue::Kind::kList;
        v.list = parse_list(true);
      } else if (c == '"') {
        const std::size_t e = s_.find('"', pos_ + 1);
        if (e == std::string::npos) fail(key, "unterminated string");
        v.kind = GmlValue::Kind::kString;
        v.text = s_.substr(pos_ + 1, e - pos_ - 1);
        line_ += static_cast<int>(std::count(v.text.begin(), v.text.end(), '\n'));
        pos_ = e + 1;
      } else {
        const std::size_t v0 = pos_;
        while (pos_ < s_.size() && !std::isspace(static_cast<unsigned char>(s_[pos_])) && s_[pos_] != ']')
          ++pos_;
        const std::string tok = s_.substr(v0, pos_ - v0);
        char* end = nullptr;
        v.number = std::strtod(tok.c_str(), &end);
        if (tok.empty() || end != tok.c_str() + tok.size() || !std::isfinite(v.number))
          fail(key, fmt::format("expected a number, found '{}'", tok));
      }
      out.push_back(GmlEntry{std::move(key), std::move(v)});
    }
    --depth_;
    return out;
  }

  const std::string& s_;
  std::string name_;
  std::size_t pos_ = 0;
  int line_ = 1;
  int depth_ = 0;
};

const GmlValue* find(const GmlList& l, const std::string& key) {
  for (const auto& [k, v] : l)
    if (k == key) return &v;
  return nullptr;
}

// A node id or an edge's endpoint: an integer that a double holds exactly (|x| <= 2^53), so the
// cast is defined and two distinct ids never round to one.
std::int64_t gml_id(const GmlValue& v, const std::string& name, const std::string& field) {
  constexpr double kMaxExact = 9007199254740992.0;  // 2^53
  if (v.kind == GmlValue::Kind::kList) fail_input(name, v.line, field, "expected an integer id, found a list");
  if (v.kind == GmlValue::Kind::kString)
    fail_input(name, v.line, field, fmt::format("expected an integer id, found \"{}\"", v.text));
  if (std::trunc(v.number) != v.number || std::fabs(v.number) > kMaxExact)
    fail_input(name, v.line, field, fmt::format("expected an integer id of magnitude at most 2^53, found {}", v.number));
  return static_cast<std::int64_t>(v.number);
}

}  // namespace

Graph parse_gml(const std::string& text, const std::string& name, double default_capacity) {
  GmlParser p(text, name);
  const GmlList top = p.parse_top();
  const GmlValue* graph = find(top, "graph");
  if (!graph || graph->kind != GmlValue::Kind::kList) fail_input(name, 1, "graph", "missing 'graph [ ... ]'");
  const GmlValue* directed = find(graph->list, "directed");
  const bool is_directed = directed && directed->number != 0;
  Graph g;
  std::map<std::int64_t, int> index;
  for (const auto& [k, v] : graph->list) {
    if (k != "node") continue;
    if (v.kind != GmlValue::Kind::kList) fail_input(name, v.line, "node", "expected a list");
    const GmlValue* id = find(v.list, "id");
    if (!id || id->kind != GmlValue::Kind::kNumber) fail_input(name, v.line, "id", "node without a numeric id");
    Node n;
    n.id = gml_id(*id, name, "id");
    if (index.count(n.id)) fail_input(name, id->line, "id", fmt::format("duplicate node id {}", n.id));
    if (const GmlValue* lab = find(v.list, "label")) n.name = lab->text;
    if (n.name.empty()) n.name = std::to_string(n.id);
    const GmlValue* lat = find(v.list, "Latitude");
    const GmlValue* lon = find(v.list, "Longitude");
    if (lat && lon && lat->kind == GmlValue::Kind::kNumber && lon->kind == GmlValue::Kind::kNumber) {
      if (std::fabs(lat->number) > 90 || std::fabs(lon->number) > 180)
        fail_input(name, lat->line, "Latitude", "coordinates out of range");
      n.lat = lat->number;
      n.lon = lon->number;
      n.has_coords = true;
    }
    index[n.id] = static_cast<int>(g.nodes.size());
    g.nodes.push_back(n);
  }
  LinkMerger add(g);
  for (const auto& [k, v] : graph->list) {
    if (k != "edge") continue;
    if (v.kind != GmlValue::Kind::kList) fail_input(name, v.line, "edge", "expected a list");
    const GmlValue* s = find(v.list, "source");
    const GmlValue* t = find(v.list, "target");
    if (!s || !t) fail_input(name, v.line, s ? "target" : "source", "edge without endpoints");
    const std::int64_t src = gml_id(*s, name, "source"), dst = gml_id(*t, name, "target");
    auto is = index.find(src);
    auto it = index.find(dst);
    if (is == index.end()) fail_input(name, s->line, "source", fmt::format("unknown node {}", src));
    if (it == index.end()) fail_input(name, t->line, "target", fmt::format("unknown node {}", dst));
    double cap = default_capacity;
    if (const GmlValue* c = find(v.list, "capacity")) {
      if (c->kind != GmlValue::Kind::kNumber || c->number < 0)
        fail_input(name, c->line, "capacity", "must be a non-negative number");
      cap = c->number;
    }
    if (is->second == it->second) continue;  // self-loops carry nothing
    add(is->second, it->second, cap);
    if (!is_directed) add(it->second, is->second, cap);
  }
  if (g.nodes.empty()) fail_input(name, 1, "node", "graph has no nodes");
  g.rebuild_adjacency();
  Graph scc = largest_scc(g);
  assign_latencies(scc);
  return scc;
}

Graph read_gml(const std::string& path, double default_capacity) {
  return parse_gml(slurp(path), path, default_capacity);
}

// ---- node-link JSON -------------------------------------------------------------------------

Graph parse_node_link_json(const std::string& text, const std::string& name) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) fail_input(name, 0, "", "not valid JSON");
  if (!j.is_object() || !j.contains("nodes") || !j.contains("links") || !j["nodes"].is_array() ||
      !j["links"].is_array())
    fail_input(name, 0, "", "expected node-link JSON with 'nodes' and 'links' arrays");
  // Checked first: value() throws a type_error on a non-boolean.
  if (j.contains("directed") && !j["directed"].is_boolean()) fail_input(name, 0, "directed", "expected true or false");
  const bool directed = j.value("directed", true);
  Graph g;
  std::map<std::int64_t, int> index;
  std::size_t i = 0;
  for (const auto& n : j["nodes"]) {
    const std::string where = fmt::format("nodes[{}].id", i++);
    if (!n.is_object() || !n.contains("id") || !n["id"].is_number_integer())
      fail_input(name, 0, where, "expected an integer id");
    Node node;
    node.id = n["id"].get<std::int64_t>();
    if (index.count(node.id)) fail_input(name, 0, where, fmt::format("duplicate id {}", node.id));
    node.name = std::to_string(node.id);
    for (const char* lat : {"lat", "Latitude", "latitude"})
      for (const char* lon : {"lon", "Longitude", "longitude"})
        if (n.contains(lat) && n.contains(lon) && n[lat].is_number() && n[lon].is_number()) {
          node.lat = n[lat].get<double>();
          node.lon = n[lon].get<double>();
          node.has_coords = std::fabs(node.lat) <= 90 && std::fabs(node.lon) <= 180;
        }
    index[node.id] = static_cast<int>(g.nodes.size());
    g.nodes.push_back(node);
  }
  LinkMerger add(g);
  i = 0;
  for (const auto& l : j["links"]) {
    const std::string where = fmt::format("links[{}]", i++);
    if (!l.is_object() || !l.contains("source") || !l.contains("target") ||
        !l["source"].is_number_integer() || !l["target"].is_number_integer())
      fail_input(name, 0, where + ".source", "expected integer source and target");
    auto s = index.find(l["source"].get<std::int64_t>());
    auto t = index.find(l["target"].get<std::int64_t>());
    if (s == index.end() || t == index.end())
      fail_input(name, 0, where, "link to an unknown node");
    if (!l.contains("capacity") || !l["capacity"].is_number())
      fail_input(name, 0, where + ".capacity", "missing");
    const double cap = l["capacity"].get<double>();
    if (!(cap >= 0) || !std::isfinite(cap)) fail_input(name, 0, where + ".capacity", "must be non-negative");
    if (s->second == t->second) continue;
    for (int dir = 0; dir < (directed ? 1 : 2); ++dir) {
      add(dir ? t->second : s->second, dir ? s->second : t->second, cap);
    }
  }
  if (g.nodes.empty()) fail_input(name, 0, "nodes", "graph has no nodes");
  g.rebuild_adjacency();
  assign_latencies(g);
  return g;
}

Graph read_node_link_json(const std::string& path) { return parse_node_link_json(slurp(path), path); }

Graph read_topology(const std::string& path, double default_capacity) {
  if (path.size() >= 5 && path.substr(path.size() - 5) == ".json") return read_node_link_json(path);
  if (path.size() >= 4 && path.substr(path.size() - 4) == ".gml") return read_gml(path, default_capacity);
  core::fail_flag("topology", fmt::format("'{}': expected a .gml or .json file", path));
}

// ---- strongly connected components ----------------------------------------------------------

Graph largest_scc(const Graph& g) {
  const int n = static_cast<int>(g.nodes.size());
  std::vector<int> idx(n, -1), low(n, 0), comp(n, -1);
  std::vector<char> on(n, 0);
  std::vector<int> stack;
  int counter = 0, ncomp = 0;
  // Iterative Tarjan: (node, next out-edge position).
  std::vector<std::pair<int, std::size_t>> call;
  for (int s = 0; s < n; ++s) {
    if (idx[s] >= 0) continue;
    call.push_back({s, 0});
    while (!call.empty()) {
      auto& [v, pos] = call.back();
      if (pos == 0 && idx[v] < 0) {
        idx[v] = low[v] = counter++;
        stack.push_back(v);
        on[v] = 1;
      }
      const auto& outs = g.out[static_cast<std::size_t>(v)];
      if (pos < outs.size()) {
        const int w = g.links[static_cast<std::size_t>(outs[pos++])].dst;
        if (idx[w] < 0) {
          call.push_back({w, 0});
        } else if (on[w]) {
          low[v] = std::min(low[v], idx[w]);
        }
        continue;
      }
      if (low[v] == idx[v]) {
        while (true) {
          const int w = stack.back();
          stack.pop_back();
          on[w] = 0;
          comp[w] = ncomp;
          if (w == v) break;
        }
        ++ncomp;
      }
      const int done = v;
      call.pop_back();
      if (!call.empty()) low[call.back().first] = std::min(low[call.back().first], low[done]);
    }
  }
  std::vector<int> size(ncomp, 0);
  for (int v = 0; v < n; ++v) ++size[comp[v]];
  const int best = static_cast<int>(std::max_element(size.begin(), size.end()) - size.begin());
  Graph out;
  std::vector<int> remap(n, -1);
  for (int v = 0; v < n; ++v)
    if (comp[v] == best) {
      remap[v] = static_cast<int>(out.nodes.size());
      out.nodes.push_back(g.nodes[static_cast<std::size_t>(v)]);
    }
  for (const auto& l : g.links)
    if (remap[l.src] >= 0 && remap[l.dst] >= 0) out.links.push_back(Link{remap[l.src], remap[l.dst], l.capacity, l.latency_ms});
  out.rebuild_adjacency();
  return out;
}

}  // namespace infergrid::te
