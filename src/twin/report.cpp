// report.html: one self-contained page (no network needed) with a world map of sites and links
// colored by load, and charts over time. Vega, Vega-Lite and vega-embed (BSD-3) and world-atlas
// (ISC) come from npm (web/package.json) and are inlined at write time.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "core/paths.hpp"
#include "twin/output.hpp"
#include "twin/web_assets.hpp"

namespace infergrid::twin {

using json = nlohmann::ordered_json;

std::string read_asset(const std::string& rel) {
  const std::string path = core::web_dir() + "/node_modules/" + rel;
  std::ifstream in(path, std::ios::binary);
  if (!in)
    core::fail_input(path, 0, "", "report asset missing (run `make build`, which runs `npm ci` in web/)");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Text placed inside <script> must not close it: "</script" (any case) becomes "<\/script",
// which means the same inside a JavaScript string, regular expression or JSON string.
std::string script_safe(std::string s) {
  for (std::size_t p = 0; (p = s.find("</", p)) != std::string::npos; p += 2) {
    std::string next = s.substr(p + 2, 6);
    for (auto& c : next) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (next == "script") s.replace(p, 2, "<\\/");
  }
  return s;
}

namespace {

const char* kPage = R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>infergrid planet report: %TITLE%</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:20px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:18px 0 6px}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.kpi{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:130px}
.kpi b{display:block;font-size:18px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:14px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px;overflow:auto}
table{border-collapse:collapse;font-size:13px} td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}
</style>
<script>%VEGA%</script>
<script>%VEGALITE%</script>
<script>%VEGAEMBED%</script>
</head><body>
<h1>infergrid planet twin: %TITLE%</h1>
<div id="meta"></div>
<div class="kpis" id="kpis"></div>
<div class="card"><h2>Sites and DCI links (color: peak link utilization; circle: requests served)</h2><div id="map"></div></div>
<div class="grid">
<div class="card"><h2>Arrivals by class</h2><div id="arrivals"></div></div>
<div class="card"><h2>Time to first token</h2><div id="ttft"></div></div>
<div class="card"><h2>Traffic: user-facing vs inter-site</h2><div id="traffic"></div></div>
<div class="card"><h2>Facility power</h2><div id="power"></div></div>
<div class="card"><h2>Busiest links over time</h2><div id="links"></div></div>
<div class="card"><h2>Replicas ready per site (controller: <span id="controller"></span>)</h2><div id="replicas"></div></div>
<div class="card"><h2>Facility power against budget, per site</h2><div id="budget"></div></div>
<div class="card"><h2>Classes</h2><div id="classes"></div></div>
</div>
<script id="data" type="application/json">%DATA%</script>
<script id="world" type="application/json">%WORLD%</script>
<script>
(function(){
const D = JSON.parse(document.getElementById('data').textContent);
const topo = JSON.parse(document.getElementById('world').textContent);
window.__rendered = 0; window.__failed = [];
const esc = s => String(s).replace(/[&<>]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;'}[c]));
document.getElementById('meta').textContent =
  `router ${D.router}, seed ${D.seed}, ${D.hours} h simulated, ${D.sites.length} sites, ${D.links.length} links, ${D.metros} metros`;
const k = D.kpis, kp = document.getElementById('kpis');
for (const [name, v] of Object.entries(k)) kp.insertAdjacentHTML('beforeend', `<div class="kpi">${esc(name)}<b>${esc(v)}</b></div>`);
const opts = {renderer: 'svg', actions: false};
function show(id, spec) {
  vegaEmbed('#' + id, spec, opts).then(() => { window.__rendered++; })
    .catch(e => { window.__failed.push(id + ': ' + e); console.error(e); });
}
show('map', {
  $schema: 'https://vega.github.io/schema/vega-lite/v5.json', width: 1100, height: 560,
  projection: {type: 'equalEarth'},
  layer: [
    {data: {values: topo, format: {type: 'topojson', feature: 'countries'}}, mark: {type: 'geoshape', fill: '#e8e8e8', stroke: '#fff', strokeWidth: 0.5}},
    {data: {values: D.links}, mark: {type: 'geoshape', filled: false, strokeWidth: 2},
     encoding: {color: {field: 'properties.peak_util', type: 'quantitative', title: 'peak utilization', scale: {scheme: 'orangered', domain: [0, D.max_util]}},
                tooltip: [{field: 'properties.name', title: 'link'}, {field: 'properties.gbps', title: 'Gbit/s'}, {field: 'properties.peak_util', title: 'peak utilization', format: '.2%'}, {field: 'properties.gb', title: 'GB moved', format: ',.1f'}]}},
    {data: {values: D.sites}, mark: {type: 'circle', stroke: '#333', strokeWidth: 0.5, opacity: 0.85},
     encoding: {longitude: {field: 'lon', type: 'quantitative'}, latitude: {field: 'lat', type: 'quantitative'},
                size: {field: 'completed', type: 'quantitative', title: 'requests served', scale: {range: [20, 600]}},
                color: {field: 'tier', type: 'nominal', scale: {domain: ['core', 'regional', 'edge'], range: ['#1f5fa8', '#2a9d8f', '#e9a23b']}},
                tooltip: [{field: 'id'}, {field: 'tier'}, {field: 'completed', format: ','}, {field: 'peak_kw', format: ',.0f'}, {field: 'carbon_kg', format: ',.0f'}]}}
  ]
});
const wide = 430;
show('arrivals', {$schema: 'https://vega.github.io/schema/vega-lite/v5.json', width: wide, height: 220,
  data: {values: D.arrivals}, mark: 'area',
  encoding: {x: {field: 't_h', type: 'quantitative', title: 'hour (UTC)'}, y: {field: 'per_s', type: 'quantitative', stack: true, title: 'requests/s'},
             color: {field: 'class', type: 'nominal'}}});
show('ttft', {$schema: 'https://vega.github.io/schema/vega-lite/v5.json', width: wide, height: 220,
  data: {values: D.ttft}, mark: 'line',
  encoding: {x: {field: 't_h', type: 'quantitative', title: 'hour (UTC)'}, y: {field: 'ms', type: 'quantitative', scale: {type: 'log'}, title: 'TTFT (ms)'},
             color: {field: 'q', type: 'nominal', title: 'percentile'}}});
show('traffic', {$schema: 'https://vega.github.io/schema/vega-lite/v5.json', width: wide, height: 220,
  data: {values: D.traffic}, mark: 'line',
  encoding: {x: {field: 't_h', type: 'quantitative', title: 'hour (UTC)'}, y: {field: 'gbps', type: 'quantitative', title: 'Gbit/s'},
             color: {field: 'kind', type: 'nominal'}}});
show('power', {$schema: 'https://vega.github.io/schema/vega-lite/v5.json', width: wide, height: 220,
  data: {values: D.power}, mark: 'line',
  encoding: {x: {field: 't_h', type: 'quantitative', title: 'hour (UTC)'}, y: {field: 'kw', type: 'quantitative', title: 'kW (all sites, with PUE)'}}});
show('links', {$schema: 'https://vega.github.io/schema/vega-lite/v5.json', width: wide, height: 220,
  data: {values: D.link_series}, mark: 'rect',
  encoding: {x: {field: 't_h', type: 'ordinal', sort: null, title: 'hour (UTC)', axis: {labelOverlap: true}}, y: {field: 'link', type: 'nominal', title: null},
             color: {field: 'util', type: 'quantitative', scale: {scheme: 'orangered'}, title: 'utilization'}}});
document.getElementById('controller').textContent = D.controller;
show('replicas', {$schema: 'https://vega.github.io/schema/vega-lite/v5.json', width: wide, height: 220,
  data: {values: D.fleet}, mark: {type: 'line', interpolate: 'step-after'},
  encoding: {x: {field: 't_h', type: 'quantitative', title: 'hour (UTC)'}, y: {field: 'ready', type: 'quantitative', title: 'replicas ready'},
             color: {field: 'site', type: 'nominal'}}});
show('budget', {$schema: 'https://vega.github.io/schema/vega-lite/v5.json', width: wide, height: 220,
  data: {values: D.fleet},
  layer: [{mark: 'line', encoding: {x: {field: 't_h', type: 'quantitative', title: 'hour (UTC)'}, y: {field: 'kw', type: 'quantitative', title: 'kW (with PUE)'}, color: {field: 'site', type: 'nominal'}}},
          {mark: {type: 'line', strokeDash: [4, 3]}, encoding: {x: {field: 't_h', type: 'quantitative'}, y: {field: 'budget_kw', type: 'quantitative'}, color: {field: 'site', type: 'nominal'}}}]});
let t = '<table><tr><th>class</th><th>completed</th><th>lost</th><th>TTFT p50</th><th>TTFT p99</th><th>SLO</th></tr>';
for (const c of D.classes) t += `<tr><td>${esc(c.name)}</td><td>${c.completed.toLocaleString()}</td><td>${c.lost}</td><td>${c.ttft_p50.toFixed(0)} ms</td><td>${c.ttft_p99.toFixed(0)} ms</td><td>${(100*c.slo).toFixed(1)}%</td></tr>`;
document.getElementById('classes').innerHTML = t + '</table>';
})();
</script>
</body></html>
)HTML";

void replace(std::string& s, const std::string& key, const std::string& value) {
  const auto p = s.find(key);
  if (p != std::string::npos) s.replace(p, key.size(), value);
}

}  // namespace

std::string report_html(const world::World& w, const PlanetConfig& cfg, const PlanetResult& r) {
  json d;
  d["router"] = cfg.router;
  d["seed"] = cfg.seed;
  d["hours"] = cfg.hours;
  d["metros"] = w.metros.size();
  json kpis;
  kpis["requests"] = fmt::format("{:.2f} M", static_cast<double>(r.arrived) / 1e6);
  kpis["completed"] = fmt::format("{:.2f}%", r.arrived ? 100.0 * static_cast<double>(r.completed) / static_cast<double>(r.arrived) : 0.0);
  kpis["lost"] = std::to_string(r.lost);
  kpis["inter-site / user bytes"] = fmt::format("{:.2f}", r.user_bytes > 0 ? r.inter_site_bytes / r.user_bytes : 0.0);
  double kwh = 0, carbon = 0;
  for (std::size_t s = 0; s < w.sites.size(); ++s) {
    kwh += site_facility_kwh(w, r, s);
    carbon += site_carbon_kg(w, r, s);
  }
  kpis["energy"] = fmt::format("{:.1f} MWh", kwh / 1000);
  kpis["carbon"] = fmt::format("{:.1f} t CO2", carbon / 1000);
  d["kpis"] = kpis;
  json sites = json::array();
  for (std::size_t s = 0; s < w.sites.size(); ++s) {
    sites.push_back({{"id", w.sites[s].id}, {"tier", world::tier_name(w.sites[s].tier)}, {"lat", w.sites[s].pos.lat},
                     {"lon", w.sites[s].pos.lon}, {"completed", r.sites[s].completed}, {"peak_kw", r.sites[s].peak_kw},
                     {"carbon_kg", site_carbon_kg(w, r, s)}});
  }
  d["sites"] = sites;
  json links = json::array();
  double max_util = 1e-6;
  for (std::size_t l = 0; l < w.links.size(); ++l) {
    const auto& lk = w.links[l];
    const auto& a = w.sites[static_cast<std::size_t>(lk.a)];
    const auto& b = w.sites[static_cast<std::size_t>(lk.b)];
    max_util = std::max(max_util, r.links[l].peak_util);
    // A GeoJSON line: the map draws it as a great circle, cut at the antimeridian.
    links.push_back({{"type", "Feature"},
                     {"geometry", {{"type", "LineString"},
                                   {"coordinates", json::array({json::array({a.pos.lon, a.pos.lat}),
                                                                json::array({b.pos.lon, b.pos.lat})})}}},
                     {"properties", {{"name", a.id + " - " + b.id}, {"gbps", lk.gbps},
                                     {"peak_util", r.links[l].peak_util},
                                     {"gb", (r.links[l].bytes_ab + r.links[l].bytes_ba) / 1e9}}}});
  }
  d["links"] = links;
  d["max_util"] = max_util;
  json arrivals = json::array(), ttft = json::array(), traffic = json::array(), power = json::array(),
       lseries = json::array();
  // The eight links with the highest peak, over time.
  const auto top = busiest_links(r, 8);
  for (std::size_t i = 0; i < r.buckets.size(); ++i) {
    const auto& b = r.buckets[i];
    const double end = i + 1 < r.buckets.size() ? r.buckets[i + 1].t_s : core::to_seconds(r.end);
    const double dt = std::max(1e-9, end - b.t_s);
    const double th = b.t_s / 3600;
    // The drain after the horizon (no arrivals, the last requests finishing) stays in
    // timeseries.csv; the charts show the simulated day.
    if (b.t_s >= cfg.hours * 3600 - 1e-6) continue;
    for (std::size_t c = 0; c < b.arrivals.size(); ++c)
      arrivals.push_back({{"t_h", th}, {"class", w.workload.classes[c].name}, {"per_s", static_cast<double>(b.arrivals[c]) / dt}});
    if (b.ttft.count()) {
      ttft.push_back({{"t_h", th}, {"q", "p50"}, {"ms", b.ttft.quantile(0.5)}});
      ttft.push_back({{"t_h", th}, {"q", "p99"}, {"ms", b.ttft.quantile(0.99)}});
    }
    traffic.push_back({{"t_h", th}, {"kind", "user-facing"}, {"gbps", b.user_bytes * 8 / dt / 1e9}});
    traffic.push_back({{"t_h", th}, {"kind", "inter-site"}, {"gbps", b.inter_site_bytes * 8 / dt / 1e9}});
    power.push_back({{"t_h", th}, {"kw", b.facility_kw}});
    for (auto l : top)
      if (l < b.link_util.size())
        lseries.push_back({{"t_h", fmt::format("{:.2f}", th)},
                           {"link", w.sites[static_cast<std::size_t>(w.links[l].a)].id + " - " +
                                        w.sites[static_cast<std::size_t>(w.links[l].b)].id},
                           {"util", b.link_util[l]}});
  }
  d["arrivals"] = arrivals;
  d["ttft"] = ttft;
  d["traffic"] = traffic;
  d["power"] = power;
  d["link_series"] = lseries;
  // Replicas and power per site: the eight sites closest to their budget (the busiest where none
  // has one), every minute of a short run, every fifth of a long one.
  d["controller"] = r.controller;
  std::vector<double> closeness(w.sites.size(), -1);
  for (const auto& f : r.fleet_rows)
    closeness[static_cast<std::size_t>(f.site)] = std::max(closeness[static_cast<std::size_t>(f.site)],
                                                           f.budget_kw > 0 ? f.facility_kw / f.budget_kw : f.facility_kw * 1e-9);
  std::vector<std::size_t> order;
  for (std::size_t s = 0; s < w.sites.size(); ++s)
    if (closeness[s] >= 0) order.push_back(s);
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return closeness[a] > closeness[b]; });
  if (order.size() > 8) order.resize(8);
  std::vector<char> shown(w.sites.size(), 0);
  for (auto s : order) shown[s] = 1;
  const int every = cfg.hours > 6 ? 5 : 1;
  json fleet = json::array();
  for (const auto& f : r.fleet_rows) {
    if (!shown[static_cast<std::size_t>(f.site)] || static_cast<long>(std::lround(f.t_s / 60)) % every != 0) continue;
    fleet.push_back({{"t_h", f.t_s / 3600}, {"site", w.sites[static_cast<std::size_t>(f.site)].id}, {"ready", f.ready},
                     {"kw", f.facility_kw}, {"budget_kw", f.budget_kw}});
  }
  d["fleet"] = fleet;
  json classes = json::array();
  for (std::size_t c = 0; c < r.classes.size(); ++c) {
    const auto& cs = r.classes[c];
    classes.push_back({{"name", w.workload.classes[c].name}, {"completed", cs.completed}, {"lost", cs.lost},
                       {"ttft_p50", cs.ttft.quantile(0.5)}, {"ttft_p99", cs.ttft.quantile(0.99)},
                       {"slo", cs.arrived ? static_cast<double>(cs.met_slo) / static_cast<double>(cs.arrived) : 0.0}});
  }
  d["classes"] = classes;

  std::string page = kPage;
  replace(page, "%VEGA%", script_safe(read_asset("vega/build/vega.min.js")));
  replace(page, "%VEGALITE%", script_safe(read_asset("vega-lite/build/vega-lite.min.js")));
  replace(page, "%VEGAEMBED%", script_safe(read_asset("vega-embed/build/vega-embed.min.js")));
  replace(page, "%DATA%", script_safe(d.dump()));
  replace(page, "%WORLD%", script_safe(read_asset("world-atlas/countries-110m.json")));
  // Titles last: the assets are large, and a title is short.
  replace(page, "%TITLE%", w.name);
  replace(page, "%TITLE%", w.name);
  return page;
}

}  // namespace infergrid::twin
