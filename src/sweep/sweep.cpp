#include "sweep/sweep.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "control/fleet.hpp"
#include "control/site_router.hpp"
#include "core/error.hpp"
#include "core/sketch.hpp"
#include "twin/output.hpp"
#include "twin/planet.hpp"
#include "twin/web_assets.hpp"
#include "world/world.hpp"
#include "world/yaml_fields.hpp"

namespace infergrid::sweep {

using json = nlohmann::ordered_json;
using world::Fields;

namespace {

std::vector<std::string> str_list(const std::string& path, Fields& f, const std::string& key,
                                  const std::vector<std::string>& dflt, const std::vector<std::string>& allowed) {
  if (!f.has(key)) return dflt;
  const YAML::Node n = f.node(key);
  if (!n.IsSequence() || n.size() == 0) core::fail_input(path, Fields::line(n), key, "expected a non-empty list");
  std::vector<std::string> out;
  for (const auto& v : n) {
    if (!v.IsScalar()) core::fail_input(path, Fields::line(v), key, "expected a name");
    const std::string s = v.Scalar();
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), s) == allowed.end())
      core::fail_input(path, Fields::line(v), key, fmt::format("unknown '{}' (expected one of: {})", s, fmt::join(allowed, ", ")));
    out.push_back(s);
  }
  return out;
}

std::string resolve(const std::string& grid_file, const std::string& p) {
  if (p.empty() || std::filesystem::path(p).is_absolute()) return p;
  return (std::filesystem::path(grid_file).parent_path() / p).lexically_normal().string();
}

// The metrics of a row that the summary and the page aggregate over seeds.
const std::vector<std::string> kMetrics = {"goodput_rps",  "slo_attainment", "critical_slo",    "gpu_hours",
                                           "facility_kwh", "carbon_kg",      "weight_bytes_moved", "lost",
                                           "rejected",     "window_goodput_rps", "window_slo", "window_critical_slo"};

std::string csv_cell(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c == '\n' ? ' ' : c);
    return q + "\"";
  }
  if (v.is_number_float()) return fmt::format("{:.6g}", v.get<double>());
  return v.dump();
}

}  // namespace

Grid load_grid(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    core::fail_input(path, 0, "", "cannot read the file");
  } catch (const YAML::Exception& e) {
    core::fail_input(path, e.mark.line + 1, "", e.msg);
  }
  Grid g;
  g.file = path;
  Fields f(path, root, "sweep");
  g.name = f.str("name", std::filesystem::path(path).stem().string());
  g.hours = f.num("hours", 1, false, 0.01, 24 * 366);
  g.scale = f.num("scale", 1, false, 1e-6, 1e6);
  g.controllers = str_list(path, f, "controllers", g.controllers, control::controller_names());
  g.routers = str_list(path, f, "routers", g.routers, control::site_router_names());
  g.bandwidth = str_list(path, f, "bandwidth", g.bandwidth, {"fair", "te"});
  if (f.has("policies")) {
    if (f.has("controllers") || f.has("routers"))
      core::fail_input(path, Fields::line(f.node("policies")), "policies", "give policies, or controllers and routers, not both");
    const YAML::Node n = f.node("policies");
    if (!n.IsSequence() || n.size() == 0) core::fail_input(path, Fields::line(n), "policies", "expected a non-empty list");
    const auto cs = control::controller_names();
    const auto rs = control::site_router_names();
    for (const auto& p : n) {
      Fields pf(path, p, "policies");
      const std::string c = pf.str("controller", "", true), r = pf.str("router", "nearest");
      if (std::find(cs.begin(), cs.end(), c) == cs.end())
        core::fail_input(path, Fields::line(p), "controller", fmt::format("unknown '{}' (expected one of: {})", c, fmt::join(cs, ", ")));
      if (std::find(rs.begin(), rs.end(), r) == rs.end())
        core::fail_input(path, Fields::line(p), "router", fmt::format("unknown '{}' (expected one of: {})", r, fmt::join(rs, ", ")));
      g.policies.emplace_back(c, r);
    }
  }
  if (f.has("seeds")) {
    const YAML::Node n = f.node("seeds");
    g.seeds.clear();
    if (!n.IsSequence() || n.size() == 0) core::fail_input(path, Fields::line(n), "seeds", "expected a non-empty list of seeds");
    for (const auto& v : n) {
      std::uint64_t s = 0;
      try {
        s = v.as<std::uint64_t>();
      } catch (const YAML::Exception&) {
        core::fail_input(path, Fields::line(v), "seeds", "expected a non-negative integer");
      }
      g.seeds.push_back(s);
    }
  }
  if (!f.has("scenarios")) core::fail_input(path, Fields::line(root), "scenarios", "missing");
  const YAML::Node sc = f.node("scenarios");
  if (!sc.IsSequence() || sc.size() == 0) core::fail_input(path, Fields::line(sc), "scenarios", "expected a non-empty list");
  std::set<std::string> names;
  for (const auto& n : sc) {
    Fields s(path, n, "scenarios");
    ScenarioSpec spec;
    spec.name = s.str("name", "", true);
    if (!names.insert(spec.name).second)
      core::fail_input(path, Fields::line(n), "name", fmt::format("scenario '{}' given twice", spec.name));
    spec.world = resolve(path, s.str("world", ""));
    spec.scenario = resolve(path, s.str("scenario", ""));
    spec.hours = s.num("hours", -1, false, 0.01, 24 * 366);
    spec.scale = s.num("scale", -1, false, 1e-6, 1e6);
    g.scenarios.push_back(spec);
  }
  return g;
}

std::vector<RunSpec> expand(const Grid& g) {
  std::vector<std::pair<std::string, std::string>> pairs = g.policies;
  if (pairs.empty())
    for (const auto& c : g.controllers)
      for (const auto& r : g.routers) pairs.emplace_back(c, r);
  std::vector<RunSpec> out;
  for (std::size_t s = 0; s < g.scenarios.size(); ++s)
    for (const auto& [c, r] : pairs)
        for (const auto& b : g.bandwidth)
          for (auto seed : g.seeds) {
            RunSpec x;
            x.index = out.size();
            x.scenario = s;
            x.controller = c;
            x.router = r;
            x.bandwidth = b;
            x.seed = seed;
            out.push_back(x);
          }
  return out;
}

std::string run_one(const Grid& g, const RunSpec& r, const model::Catalog& catalog) {
  const ScenarioSpec& sc = g.scenarios[r.scenario];
  json row;
  row["run"] = r.index;
  row["scenario"] = sc.name;
  row["controller"] = r.controller;
  row["router"] = r.router;
  row["bandwidth"] = r.bandwidth;
  row["seed"] = r.seed;
  try {
    auto w = world::load_world(sc.world.empty() ? world::default_world_path() : sc.world, catalog);
    if (!sc.scenario.empty()) world::load_scenario(sc.scenario, w);
    twin::PlanetConfig cfg;
    cfg.router = r.router;
    cfg.controller = r.controller;
    cfg.bandwidth = r.bandwidth;
    cfg.seed = r.seed;
    cfg.hours = sc.hours > 0 ? sc.hours : g.hours;
    cfg.scale = sc.scale > 0 ? sc.scale : g.scale;
    twin::PlanetSim sim(w, catalog, cfg);
    const auto res = sim.run();
    const json s = json::parse(twin::planet_summary_json(w, cfg, res));
    const auto& q = s["requests"];
    row["status"] = "ok";
    row["error"] = nullptr;
    row["arrived"] = q["arrived"];
    row["completed"] = q["completed"];
    row["rejected"] = q["rejected"];
    row["lost"] = q["lost"];
    double met = 0, arrived = 0, cmet = 0, carrived = 0, goodput = 0;
    json per = json::object();
    for (const auto& c : s["classes"]) {
      const double a = c["arrived"].get<double>(), m = c["slo_attainment"].get<double>() * a;
      met += m;
      arrived += a;
      goodput += c["goodput_rps"].get<double>();
      if (c["priority"] == "critical") cmet += m, carrived += a;
      per[c["name"].get<std::string>()] = {{"slo", c["slo_attainment"]}, {"rejected", c["rejected"]}};
    }
    row["goodput_rps"] = goodput;
    row["slo_attainment"] = arrived > 0 ? met / arrived : 0.0;
    row["critical_slo"] = carrived > 0 ? json(cmet / carrived) : json(nullptr);
    row["gpu_hours"] = s["fleet"]["gpu_hours"];
    row["it_kwh"] = s["energy"]["it_kwh"];
    row["facility_kwh"] = s["energy"]["facility_kwh"];
    row["carbon_kg"] = s["energy"]["carbon_kg"];
    row["weight_bytes_moved"] = s["fleet"]["weight_bytes_moved"];
    row["replica_starts"] = s["fleet"]["replica_starts"];
    row["classes"] = per;
    // The scenario's event window (null without scenario events): what happened under the event.
    const auto& win = s["event_window"];
    for (const auto& [col, key] : {std::pair{"window_goodput_rps", "goodput_rps"}, std::pair{"window_slo", "slo_attainment"},
                                   std::pair{"window_critical_slo", "critical_slo"}})
      row[col] = win.is_null() ? json(nullptr) : win[key];
  } catch (const std::exception& e) {
    row["status"] = "failed";
    row["error"] = e.what();
  }
  return row.dump();
}

std::string write_outputs(const std::string& dir, const Grid& g, const std::vector<std::string>& texts) {
  std::filesystem::create_directories(dir);
  std::vector<json> rows;
  for (const auto& t : texts) rows.push_back(json::parse(t));
  // Per-class columns in the order the classes first appear.
  std::vector<std::string> classes;
  for (const auto& r : rows)
    if (r.contains("classes"))
      for (const auto& [name, _] : r["classes"].items())
        if (std::find(classes.begin(), classes.end(), name) == classes.end()) classes.push_back(name);
  const std::vector<std::string> base = {"run", "scenario", "controller", "router", "bandwidth", "seed", "status",
                                         "arrived", "completed", "rejected", "lost", "goodput_rps", "slo_attainment",
                                         "critical_slo", "gpu_hours", "it_kwh", "facility_kwh", "carbon_kg",
                                         "weight_bytes_moved", "replica_starts", "window_goodput_rps", "window_slo",
                                         "window_critical_slo"};
  std::string csv;
  for (const auto& k : base) csv += k + ",";
  for (const auto& c : classes) csv += "slo_" + c + ",rejected_" + c + ",";
  csv += "error\n";
  for (const auto& r : rows) {
    for (const auto& k : base) csv += csv_cell(r.contains(k) ? r[k] : json(nullptr)) + ",";
    for (const auto& c : classes) {
      const bool has = r.contains("classes") && r["classes"].contains(c);
      csv += csv_cell(has ? r["classes"][c]["slo"] : json(nullptr)) + "," +
             csv_cell(has ? r["classes"][c]["rejected"] : json(nullptr)) + ",";
    }
    csv += csv_cell(r.value("error", json(nullptr))) + "\n";
  }
  std::ofstream(dir + "/sweep.csv") << csv;
  json all;
  all["sweep"] = g.name;
  all["runs"] = rows;
  // Over seeds: median, min and max of each metric per (scenario, controller, router, bandwidth).
  std::map<std::tuple<std::size_t, std::string, std::string, std::string>, std::vector<const json*>> groups;
  std::vector<std::tuple<std::size_t, std::string, std::string, std::string>> order;
  std::map<std::string, std::size_t> scen_index;
  for (std::size_t i = 0; i < g.scenarios.size(); ++i) scen_index[g.scenarios[i].name] = i;
  for (const auto& r : rows) {
    auto key = std::make_tuple(scen_index[r["scenario"].get<std::string>()], r["controller"].get<std::string>(),
                               r["router"].get<std::string>(), r["bandwidth"].get<std::string>());
    if (!groups.count(key)) order.push_back(key);
    groups[key].push_back(&r);
  }
  std::string sum = "scenario,controller,router,bandwidth,runs_ok,runs_failed";
  for (const auto& m : kMetrics) sum += fmt::format(",{0}_median,{0}_min,{0}_max", m);
  sum += "\n";
  json summary = json::array();
  for (const auto& key : order) {
    const auto& [s, c, rt, bw] = key;
    json e;
    e["scenario"] = g.scenarios[s].name;
    e["controller"] = c;
    e["router"] = rt;
    e["bandwidth"] = bw;
    e["policy"] = c + (g.routers.size() > 1 ? "/" + rt : "") + (g.bandwidth.size() > 1 ? "/" + bw : "");
    int ok = 0, failed = 0;
    for (const json* r : groups[key]) ((*r)["status"] == "ok" ? ok : failed)++;
    e["runs_ok"] = ok;
    e["runs_failed"] = failed;
    sum += fmt::format("{},{},{},{},{},{}", csv_cell(e["scenario"]), c, rt, bw, ok, failed);
    for (const auto& m : kMetrics) {
      std::vector<double> v;
      for (const json* r : groups[key])
        if ((*r)["status"] == "ok" && r->contains(m) && (*r)[m].is_number()) v.push_back((*r)[m].get<double>());
      if (v.empty()) {
        sum += ",,,";
        continue;
      }
      const double med = core::median(v), lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
      e[m] = {{"median", med}, {"min", lo}, {"max", hi}};
      sum += fmt::format(",{:.6g},{:.6g},{:.6g}", med, lo, hi);
    }
    sum += "\n";
    summary.push_back(e);
  }
  all["summary"] = summary;
  std::ofstream(dir + "/sweep.json") << all.dump(1) << "\n";
  std::ofstream(dir + "/sweep_summary.csv") << sum;
  // The page: per metric, bars of the median per policy with the seeds' min-max, one panel per scenario.
  json data = json::array();
  for (const auto& e : summary)
    for (const auto& m : kMetrics)
      if (e.contains(m))
        data.push_back({{"scenario", e["scenario"]}, {"policy", e["policy"]}, {"metric", m},
                        {"median", e[m]["median"]}, {"min", e[m]["min"]}, {"max", e[m]["max"]}});
  std::string page = R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>infergrid sweep: %TITLE%</title>
<style>body{font-family:system-ui,sans-serif;margin:20px;color:#222;background:#fafafa}
h1{font-size:20px} .card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px;margin:10px 0;overflow:auto}</style>
<script>%VEGA%</script><script>%VEGALITE%</script><script>%VEGAEMBED%</script></head><body>
<h1>infergrid sweep: %TITLE%</h1>
<p>Median over seeds per policy (bars) with the seeds' minimum and maximum (lines); one panel per scenario.
The table: sweep_summary.csv; every run: sweep.csv.</p>
<div id="charts"></div>
<script id="data" type="application/json">%DATA%</script>
<script>
const data = JSON.parse(document.getElementById('data').textContent);
const metrics = [...new Set(data.map(d => d.metric))];
const root = document.getElementById('charts');
for (const m of metrics) {
  const div = document.createElement('div'); div.className = 'card'; div.id = 'chart-' + m; root.appendChild(div);
  vegaEmbed(div, {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json', title: m,
    data: {values: data.filter(d => d.metric === m)},
    facet: {column: {field: 'scenario', type: 'nominal', title: null}},
    spec: {width: 220, height: 160, layer: [
      {mark: 'bar', encoding: {x: {field: 'policy', type: 'nominal', title: null}, y: {field: 'median', type: 'quantitative', title: m},
                               color: {field: 'policy', type: 'nominal', legend: null}}},
      {mark: {type: 'rule', color: '#333'}, encoding: {x: {field: 'policy', type: 'nominal'}, y: {field: 'min', type: 'quantitative'},
                               y2: {field: 'max'}}}]},
    resolve: {scale: {y: 'independent'}}
  }, {actions: false}).then(() => div.setAttribute('data-rendered', '1'));
}
</script></body></html>
)HTML";
  const auto put = [&](const std::string& k, const std::string& v) {
    const auto p = page.find(k);
    if (p != std::string::npos) page.replace(p, k.size(), v);
  };
  put("%VEGA%", twin::script_safe(twin::read_asset("vega/build/vega.min.js")));
  put("%VEGALITE%", twin::script_safe(twin::read_asset("vega-lite/build/vega-lite.min.js")));
  put("%VEGAEMBED%", twin::script_safe(twin::read_asset("vega-embed/build/vega-embed.min.js")));
  put("%DATA%", twin::script_safe(data.dump()));
  put("%TITLE%", g.name);
  put("%TITLE%", g.name);
  const std::string html = dir + "/sweep.html";
  std::ofstream(html) << page;
  return html;
}

int run_sweep(const std::string& grid_path, const std::string& out, const model::Catalog& catalog) {
  const Grid g = load_grid(grid_path);
  const auto runs = expand(g);
  bool root = false;
  int ranks = 1;
  const auto rows = run_distributed(
      runs.size(), [&](std::size_t i) { return run_one(g, runs[i], catalog); }, root, ranks);
  if (!root) return 0;
  const std::string page = write_outputs(out, g, rows);
  std::size_t failed = 0;
  for (const auto& t : rows) {
    const json r = json::parse(t);
    if (r["status"] != "ok") {
      ++failed;
      fmt::print(stderr, "run {} ({}, {}, {}, {}, seed {}) failed: {}\n", r["run"].get<std::size_t>(),
                 r["scenario"].get<std::string>(), r["controller"].get<std::string>(), r["router"].get<std::string>(),
                 r["bandwidth"].get<std::string>(), r["seed"].get<std::uint64_t>(), r["error"].get<std::string>());
    }
  }
  fmt::print("sweep '{}': {} runs ({} failed) over {} rank{}\nwrote {}/sweep.csv, {}/sweep_summary.csv, {}/sweep.json\npage: {}\n",
             g.name, rows.size(), failed, ranks, ranks > 1 ? "s" : "", out, out, out, page);
  return failed ? 1 : 0;
}

}  // namespace infergrid::sweep
