#include "twin/output.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/priority.hpp"
#include "sim/summary.hpp"

namespace infergrid::twin {

using json = nlohmann::ordered_json;

namespace {

json dist(const core::QuantileSketch& s) { return sim::sketch_json(s, true); }

const char* prio_name(workload::Priority p) {
  switch (p) {
    case workload::Priority::kCritical:
      return "critical";
    case workload::Priority::kInteractive:
      return "interactive";
    case workload::Priority::kBatch:
      return "batch";
  }
  return "?";
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  if (!out) core::fail_input(path, 0, "", "cannot write");
  out << text;
  if (!out) core::fail_input(path, 0, "", "write failed");
}

json cold(const core::QuantileSketch& s) { return {{"p50", s.quantile(0.5)}, {"p99", s.quantile(0.99)}, {"max", s.max()}}; }

// A site's GPU busy fraction (GPU-seconds running iterations over GPU-seconds held, what
// nvidia-smi calls utilization): over the run, and its busiest hour (four 15-minute buckets).
json site_gpu_busy(const PlanetResult& r, std::size_t s, std::vector<float> Bucket::*what) {
  double busy = 0, held = 0, peak = 0, peak_at = 0;
  const auto& b = r.buckets;
  for (std::size_t i = 0; i < b.size(); ++i) {
    if ((b[i].*what).size() <= s) continue;
    busy += (b[i].*what)[s];
    held += b[i].site_held_gpu_s[s];
    double hb = 0, hh = 0;
    for (std::size_t k = i; k < std::min(b.size(), i + 4); ++k)
      if ((b[k].*what).size() > s) hb += (b[k].*what)[s], hh += b[k].site_held_gpu_s[s];
    if (i + 4 <= b.size() && hh > 0 && hb / hh > peak) peak = hb / hh, peak_at = b[i].t_s / 3600;
  }
  return {{"mean", held > 0 ? busy / held : 0.0}, {"peak_hour", peak}, {"peak_hour_starts_h", peak_at}};
}

// A site's saturation from its 1-minute samples of FleetRow::saturation: the mean, and the
// busiest hour (the highest mean of 60 consecutive samples).
json site_saturation(const std::vector<double>& x) {
  double sum = 0, win = 0, peak = 0, peak_at = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sum += x[i];
    win += x[i];
    if (i >= 60) win -= x[i - 60];
    if (i + 1 >= 60 && win / 60 > peak) peak = win / 60, peak_at = static_cast<double>(i + 1 - 60) / 60;
  }
  return {{"mean", x.empty() ? 0.0 : sum / static_cast<double>(x.size())}, {"peak_hour", peak},
          {"peak_hour_starts_h", peak_at}};
}

json fleet_json(const world::World& w, const PlanetResult& r) {
  json f;
  f["controller"] = r.controller;
  f["control_ticks"] = r.control_ticks;
  double gpu_h = 0, bytes = 0, energy = 0;
  std::uint64_t starts = 0, stops = 0, restarts = 0;
  core::QuantileSketch pull{0.005}, load{0.005}, total{0.005};
  json deps = json::array();
  for (const auto& d : r.deployments) {
    gpu_h += d.gpu_hours;
    bytes += d.weight_bytes_moved;
    energy += d.energy_j;
    starts += d.starts;
    stops += d.stops;
    restarts += d.restarts;
    pull.merge(d.cold_pull);
    load.merge(d.cold_load);
    total.merge(d.cold_total);
    json e;
    e["site"] = d.site;
    e["model"] = d.model;
    e["accelerator"] = d.accelerator;
    e["tp"] = d.tp;
    if (d.ep > 1) e["ep"] = d.ep;
    e["replicas_declared"] = d.nominal;
    e["replica_slots"] = d.slots;
    e["peak_ready"] = d.peak_ready;
    e["gpu_hours"] = d.gpu_hours;
    e["replica_starts"] = d.starts;
    e["replica_stops"] = d.stops;
    e["replica_restarts"] = d.restarts;
    e["saturation"] = site_saturation(d.saturation);
    e["starts_refused"] = d.refused;
    e["refused_by_reason"] = json::object();
    for (const auto& [why, n] : d.refused_by) e["refused_by_reason"][why] = n;
    if (d.cold_total.count() > 0)
      e["cold_start_s"] = {{"pull", cold(d.cold_pull)}, {"load", cold(d.cold_load)}, {"total", cold(d.cold_total)}};
    e["weight_bytes_moved"] = d.weight_bytes_moved;
    e["it_kwh"] = d.energy_j / 3.6e6;
    e["min_power_cap"] = d.min_cap;
    if (d.version > 0) e["rolled"] = {{"versions", d.version}, {"replicas_started", d.rolled}};
    deps.push_back(e);
  }
  f["gpu_hours"] = gpu_h;
  f["replica_starts"] = starts;
  f["replica_stops"] = stops;
  f["replica_restarts"] = restarts;
  f["weight_bytes_moved"] = bytes;
  f["it_kwh"] = energy / 3.6e6;
  // Hosts beside the accelerators (catalog host_w or the world's fleet.host_w_per_gpu), before PUE.
  double host_j = 0;
  for (const auto& s : r.sites) host_j += s.host_energy_j;
  f["host_kwh"] = host_j / 3.6e6;
  f["cold_starts"] = total.count();
  if (total.count() > 0) f["cold_start_s"] = {{"pull", cold(pull)}, {"load", cold(load)}, {"total", cold(total)}};
  f["deployments"] = deps;
  json power = json::array();
  for (std::size_t s = 0; s < r.site_power.size(); ++s) {
    const auto& p = r.site_power[s];
    if (p.windows == 0) continue;
    power.push_back({{"site", w.sites[s].id},
                     {"mean_kw", p.mean_kw},
                     {"peak_kw", p.peak_kw},
                     {"budget_kw", p.budget_kw},
                     {"windows", p.windows},
                     {"breach_windows", p.breach_windows},
                     {"capped_windows", p.capped_windows}});
  }
  f["site_power"] = power;
  return f;
}

// demand.csv: arrivals per minute by priority for the ten busiest country groups and the world
// (`infergrid forecast --demand` scores the forecaster on it).
std::string demand_csv(const PlanetResult& r) {
  constexpr std::size_t kP = core::kPriorityCount;
  const char* names[kP] = {"critical", "interactive", "batch"};
  const auto& per = r.demand_minutes;  // [group * kP + priority][minute]
  std::size_t minutes = 0;
  for (const auto& v : per) minutes = std::max(minutes, v.size());
  // The world's sum, and each group's volume (the busiest first, ties by index).
  const auto& tok = r.demand_tokens;  // the same layout, token demand
  auto tokens_at = [&](std::size_t k, std::size_t m) { return k < tok.size() && m < tok[k].size() ? tok[k][m] : 0.0; };
  std::vector<std::vector<std::uint64_t>> world(kP, std::vector<std::uint64_t>(minutes, 0));
  std::vector<std::vector<double>> world_tokens(kP, std::vector<double>(minutes, 0));
  std::vector<std::pair<std::uint64_t, std::size_t>> volume(r.demand_groups.size());
  for (std::size_t g = 0; g < volume.size(); ++g) {
    volume[g] = {0, g};
    for (std::size_t p = 0; p < kP; ++p)
      for (std::size_t m = 0; m < per[g * kP + p].size(); ++m) {
        world[p][m] += per[g * kP + p][m];
        world_tokens[p][m] += tokens_at(g * kP + p, m);
        volume[g].first += per[g * kP + p][m];
      }
  }
  std::sort(volume.begin(), volume.end(), [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
  std::string out = "minute,group,priority,arrivals,tokens\n";
  for (std::size_t p = 0; p < kP; ++p)
    for (std::size_t m = 0; m < minutes; ++m)
      out += fmt::format("{},world,{},{},{:.0f}\n", m, names[p], world[p][m], world_tokens[p][m]);
  for (std::size_t i = 0; i < volume.size() && i < 10; ++i) {
    const std::size_t g = volume[i].second;
    std::string name = r.demand_groups[g];
    for (char& c : name)
      if (c == ',' || c == '\n' || c == '"') c = ' ';
    for (std::size_t p = 0; p < kP; ++p) {
      const auto& v = per[g * kP + p];
      for (std::size_t m = 0; m < minutes; ++m)
        out += fmt::format("{},{},{},{},{:.0f}\n", m, name, names[p], m < v.size() ? v[m] : 0, tokens_at(g * kP + p, m));
    }
  }
  return out;
}

}  // namespace

std::vector<std::size_t> busiest_links(const PlanetResult& r, std::size_t n) {
  std::vector<std::size_t> order(r.links.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](auto a, auto b) { return r.links[a].peak_util > r.links[b].peak_util; });
  order.resize(std::min(n, order.size()));
  return order;
}

double site_facility_kwh(const world::World& w, const PlanetResult& r, std::size_t s) {
  return (r.sites[s].it_energy_j + r.sites[s].host_energy_j) * w.sites[s].pue / 3.6e6;
}
double site_carbon_kg(const world::World& w, const PlanetResult& r, std::size_t s) {
  return site_facility_kwh(w, r, s) * w.sites[s].carbon_g_per_kwh / 1000;
}

std::string planet_summary_json(const world::World& w, const PlanetConfig& cfg, const PlanetResult& r) {
  json j;
  j["world"] = w.name;
  j["router"] = cfg.router;
  j["seed"] = cfg.seed;
  j["hours"] = cfg.hours;
  j["scale"] = cfg.scale;
  j["arrival_rhythm"] = w.workload.rhythm_source;
  j["bandwidth"] = cfg.bandwidth;
  j["world_size"] = {{"sites", w.sites.size()}, {"links", w.links.size()}, {"metros", w.metros.size()}};
  json rq;
  rq["arrived"] = r.arrived;
  rq["completed"] = r.completed;
  rq["rejected"] = r.rejected;
  rq["lost"] = r.lost;
  rq["accounted"] = r.arrived == r.completed + r.rejected + r.lost;
  rq["lost_by_reason"] = json::object();
  for (const auto& [k, v] : r.lost_by_reason) rq["lost_by_reason"][k] = v;
  j["requests"] = rq;
  const double secs = cfg.hours * 3600;
  json classes = json::array();
  for (std::size_t c = 0; c < r.classes.size(); ++c) {
    const auto& tc = w.workload.classes[c];
    const auto& cs = r.classes[c];
    json k;
    k["name"] = tc.name;
    k["priority"] = prio_name(tc.priority);
    k["model"] = tc.model;
    k["arrived"] = cs.arrived;
    k["completed"] = cs.completed;
    k["rejected"] = cs.rejected;
    k["lost"] = cs.lost;
    k["retried"] = cs.retried;
    k["rejected_by_reason"] = json::object();
    for (const auto& [why, n] : cs.rejected_by_reason) k["rejected_by_reason"][why] = n;
    k["slo_ttft_ms"] = tc.slo_ttft_ms;
    k["slo_tpot_ms"] = tc.slo_tpot_ms;
    k["slo_attainment"] = cs.arrived ? static_cast<double>(cs.met_slo) / static_cast<double>(cs.arrived) : 0.0;
    k["goodput_rps"] = static_cast<double>(cs.met_slo) / secs;
    k["output_tokens"] = cs.output_tokens;
    k["prefix_cached_fraction"] =
        cs.prompt_tokens ? static_cast<double>(cs.cached_tokens) / static_cast<double>(cs.prompt_tokens) : 0.0;
    k["ttft_ms"] = dist(cs.ttft);
    k["tpot_ms"] = dist(cs.tpot);
    k["e2e_ms"] = dist(cs.e2e);
    json split;
    split["network"] = cs.network.mean();
    split["retrieval"] = cs.retrieval.count() ? cs.retrieval.mean() * static_cast<double>(cs.retrieval.count()) /
                                                    static_cast<double>(std::max<std::uint64_t>(1, cs.completed))
                                              : 0.0;
    split["queue"] = cs.queue.mean();
    split["compute"] = cs.compute.mean();
    k["mean_time_split_ms"] = split;
    classes.push_back(k);
  }
  j["classes"] = classes;
  // The scenario's event window: goodput and SLO attainment of the requests that arrived in it.
  if (r.window_end_s > r.window_start_s) {
    json win;
    const double span = r.window_end_s - r.window_start_s;
    win["start_h"] = r.window_start_s / 3600;
    win["end_h"] = r.window_end_s / 3600;
    std::uint64_t a = 0, m = 0, ca = 0, cm = 0;
    json per = json::object();
    for (std::size_t c = 0; c < r.classes.size(); ++c) {
      const auto& cs = r.classes[c];
      a += cs.window_arrived;
      m += cs.window_met_slo;
      if (w.workload.classes[c].priority == core::Priority::kCritical) ca += cs.window_arrived, cm += cs.window_met_slo;
      per[w.workload.classes[c].name] = {
          {"arrived", cs.window_arrived},
          {"slo_attainment", cs.window_arrived ? double(cs.window_met_slo) / double(cs.window_arrived) : 0.0}};
    }
    win["arrived"] = a;
    win["met_slo"] = m;
    win["goodput_rps"] = double(m) / span;
    win["slo_attainment"] = a ? double(m) / double(a) : 0.0;
    win["critical_slo"] = ca ? json(double(cm) / double(ca)) : json(nullptr);
    win["classes"] = per;
    j["event_window"] = win;
  } else {
    j["event_window"] = nullptr;
  }
  json net;
  net["user_bytes"] = r.user_bytes;
  net["inter_site_bytes"] = r.inter_site_bytes;
  net["inter_site_to_user_ratio"] = r.user_bytes > 0 ? r.inter_site_bytes / r.user_bytes : 0.0;
  net["bytes_by_kind"] = json::object();
  for (const auto& [k, v] : r.bytes_by_kind) net["bytes_by_kind"][k] = v;
  net["flows"] = r.flows;
  net["retrievals"] = r.retrievals;
  net["retrieval_failures"] = r.retrieval_failures;
  net["kv_moves"] = r.kv_moves;
  net["kv_recomputed"] = r.kv_recomputed;
  if (r.kv_host_loads > 0) {  // only fleets with a host-memory KV tier
    net["kv_host_loads"] = r.kv_host_loads;
    net["kv_host_bytes"] = r.kv_host_bytes;
    if (r.kv_ssd_loads > 0) {
      net["kv_ssd_loads"] = r.kv_ssd_loads;
      net["kv_ssd_bytes"] = r.kv_ssd_bytes;
    }
  }
  if (r.pd_handoffs + r.pd_local > 0) {  // only worlds with disaggregated deployments
    net["pd_handoffs"] = r.pd_handoffs;
    net["pd_local"] = r.pd_local;
  }
  if (r.bulk_offered > 0) {  // only worlds with background bulk copies
    json b;
    b["offered_bytes"] = r.bulk_offered;
    b["carried_bytes"] = r.bulk_carried;
    b["backlog_bytes"] = r.bulk_backlog;
    const double inference = r.inter_site_bytes - r.bulk_carried;
    b["inference_inter_site_bytes"] = inference;
    b["inference_inter_site_to_user_ratio"] = r.user_bytes > 0 ? inference / r.user_bytes : 0.0;
    const auto it = std::max_element(r.links.begin(), r.links.end(), [](const LinkStats& x, const LinkStats& y) {
      return x.bulk_peak_backlog_s < y.bulk_peak_backlog_s;
    });
    const auto worst = static_cast<std::size_t>(it - r.links.begin());
    if (it != r.links.end())
      b["worst_backlog"] = {{"a", w.sites[static_cast<std::size_t>(w.links[worst].a)].id},
                            {"b", w.sites[static_cast<std::size_t>(w.links[worst].b)].id},
                            {"drain_s", r.links[worst].bulk_peak_backlog_s}};
    net["bulk"] = b;
  }
  net["te_solves"] = r.te_solves;
  json busiest = json::array();
  for (const std::size_t li : busiest_links(r, 5)) {
    const auto& l = w.links[li];
    json e;
    e["a"] = w.sites[static_cast<std::size_t>(l.a)].id;
    e["b"] = w.sites[static_cast<std::size_t>(l.b)].id;
    e["gbps"] = l.gbps;
    e["peak_utilization"] = r.links[li].peak_util;
    e["peak_p99_1s_utilization"] = r.links[li].peak_p99_1s;
    busiest.push_back(e);
  }
  net["busiest_links"] = busiest;
  j["network"] = net;
  double it = 0, fac = 0, carbon = 0;
  for (std::size_t s = 0; s < w.sites.size(); ++s) {
    it += r.sites[s].it_energy_j / 3.6e6;
    fac += site_facility_kwh(w, r, s);
    carbon += site_carbon_kg(w, r, s);
  }
  json en;
  en["it_kwh"] = it;
  en["facility_kwh"] = fac;
  en["network_kwh"] = r.network_energy_j / 3.6e6;
  en["carbon_kg"] = carbon;
  en["wh_per_completed_request"] = r.completed ? fac * 1000 / static_cast<double>(r.completed) : 0.0;
  j["energy"] = en;
  j["fleet"] = fleet_json(w, r);
  json sites = json::array();
  std::vector<std::vector<double>> saturation(w.sites.size());  // per site, its minute samples in order
  for (const auto& row : r.fleet_rows) saturation[static_cast<std::size_t>(row.site)].push_back(row.saturation);
  for (std::size_t s = 0; s < w.sites.size(); ++s) {
    const auto& st = r.sites[s];
    json e;
    e["id"] = w.sites[s].id;
    e["tier"] = world::tier_name(w.sites[s].tier);
    e["routed"] = st.routed;
    e["completed"] = st.completed;
    e["evacuated"] = st.evacuated;
    if (st.pd_decoded > 0) e["pd_decoded"] = st.pd_decoded;
    e["facility_kwh"] = site_facility_kwh(w, r, s);
    e["carbon_kg"] = site_carbon_kg(w, r, s);
    e["peak_kw"] = st.peak_kw;
    e["power_cap_kw"] = w.sites[s].power_cap_kw;
    e["buckets_over_cap"] = st.buckets_over_cap;
    e["peak_outstanding"] = st.peak_outstanding;
    e["gpu_busy"] = site_gpu_busy(r, s, &Bucket::site_busy_gpu_s);
    // Compute utilization: busy time weighted by how compute-bound each iteration was (MFU over
    // the model's attainable compute rate): the share of the site's FLOP capacity used.
    e["compute_utilization"] = site_gpu_busy(r, s, &Bucket::site_compute_gpu_s);
    e["saturation"] = site_saturation(saturation[s]);
    sites.push_back(e);
  }
  j["sites"] = sites;
  json stale = json::array();
  std::map<std::string, std::vector<double>> by_artifact;
  std::map<std::string, std::uint64_t> unreached;
  for (const auto& s : r.staleness) {
    if (s.ready_s < 0) ++unreached[s.artifact];
    else by_artifact[s.artifact].push_back(s.ready_s - s.published_s);
  }
  for (auto& [a, v] : by_artifact) {
    std::sort(v.begin(), v.end());
    json e;
    e["artifact"] = a;
    e["sites_reached"] = v.size();
    e["sites_unreached"] = unreached[a];
    e["median_staleness_s"] = v[v.size() / 2];
    e["max_staleness_s"] = v.back();
    stale.push_back(e);
  }
  for (const auto& [a, n] : unreached)
    if (!by_artifact.count(a)) stale.push_back(json{{"artifact", a}, {"sites_reached", 0}, {"sites_unreached", n}});
  j["staleness"] = stale;
  j["events"] = r.events;
  j["end_s"] = core::to_seconds(r.end);
  return j.dump(2) + "\n";
}

std::string planet_summary_text(const world::World& w, const PlanetResult& r) {
  std::string s = fmt::format("requests: {} arrived, {} completed, {} rejected, {} lost{}\n", r.arrived, r.completed,
                              r.rejected, r.lost,
                              r.arrived == r.completed + r.rejected + r.lost ? "" : "  (ACCOUNTING MISMATCH)");
  for (const auto& [k, v] : r.lost_by_reason) s += fmt::format("  lost: {} x {}\n", v, k);
  s += fmt::format("{:<12} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7}\n", "class", "completed", "ttft p50", "ttft p99",
                   "tpot p50", "e2e p99", "slo");
  for (std::size_t c = 0; c < r.classes.size(); ++c) {
    const auto& cs = r.classes[c];
    s += fmt::format("{:<12} {:>10} {:>7.0f}ms {:>7.0f}ms {:>7.1f}ms {:>8.1f}s {:>6.1f}%\n", w.workload.classes[c].name,
                     cs.completed, cs.ttft.quantile(0.5), cs.ttft.quantile(0.99), cs.tpot.quantile(0.5),
                     cs.e2e.quantile(0.99) / 1000,
                     cs.arrived ? 100.0 * static_cast<double>(cs.met_slo) / static_cast<double>(cs.arrived) : 0.0);
  }
  s += fmt::format("traffic: user-facing {:.1f} TB, inter-site {:.1f} TB (ratio {:.2f})\n", r.user_bytes / 1e12,
                   r.inter_site_bytes / 1e12, r.user_bytes > 0 ? r.inter_site_bytes / r.user_bytes : 0.0);
  return s;
}

std::string write_planet_outputs(const std::string& dir, const world::World& w, const PlanetConfig& cfg,
                                 const PlanetResult& r) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) core::fail_input(dir, 0, "", "cannot create: " + ec.message());
  write_file(dir + "/summary.json", planet_summary_json(w, cfg, r));
  // Time series.
  std::string ts = "t_h";
  for (const auto& c : w.workload.classes) ts += ",arrivals_" + c.name;
  ts += ",completed,lost,ttft_p50_ms,ttft_p99_ms,user_gbps,inter_site_gbps,facility_kw,carbon_kg\n";
  for (std::size_t i = 0; i < r.buckets.size(); ++i) {
    const auto& b = r.buckets[i];
    const double end = i + 1 < r.buckets.size() ? r.buckets[i + 1].t_s : core::to_seconds(r.end);
    const double dt = std::max(1e-9, end - b.t_s);
    ts += fmt::format("{:.4f}", b.t_s / 3600);
    for (auto a : b.arrivals) ts += fmt::format(",{}", a);
    ts += fmt::format(",{},{},{:.1f},{:.1f},{:.4f},{:.4f},{:.1f},{:.3f}\n", b.completed, b.lost, b.ttft.quantile(0.5),
                      b.ttft.quantile(0.99), b.user_bytes * 8 / dt / 1e9, b.inter_site_bytes * 8 / dt / 1e9,
                      b.facility_kw, b.carbon_kg);
  }
  write_file(dir + "/timeseries.csv", ts);
  std::string sites = "id,tier,lat,lon,routed,completed,evacuated,facility_kwh,carbon_kg,peak_kw,power_cap_kw,buckets_over_cap\n";
  for (std::size_t s = 0; s < w.sites.size(); ++s) {
    const auto& st = r.sites[s];
    sites += fmt::format("{},{},{:.4f},{:.4f},{},{},{},{:.3f},{:.3f},{:.1f},{:.1f},{}\n", w.sites[s].id,
                         world::tier_name(w.sites[s].tier), w.sites[s].pos.lat, w.sites[s].pos.lon, st.routed,
                         st.completed, st.evacuated, site_facility_kwh(w, r, s), site_carbon_kg(w, r, s), st.peak_kw,
                         w.sites[s].power_cap_kw, st.buckets_over_cap);
  }
  write_file(dir + "/sites.csv", sites);
  const double secs = std::max(1e-9, core::to_seconds(r.end));
  std::string links = "a,b,gbps,km,gb_ab,gb_ba,mean_utilization,peak_utilization\n";
  for (std::size_t l = 0; l < w.links.size(); ++l) {
    const auto& lk = w.links[l];
    const auto& st = r.links[l];
    links += fmt::format("{},{},{:.0f},{:.0f},{:.3f},{:.3f},{:.6f},{:.6f}\n", w.sites[static_cast<std::size_t>(lk.a)].id,
                         w.sites[static_cast<std::size_t>(lk.b)].id, lk.gbps, lk.km, st.bytes_ab / 1e9, st.bytes_ba / 1e9,
                         std::max(st.bytes_ab, st.bytes_ba) * 8 / (lk.gbps * 1e9 * secs), st.peak_util);
  }
  write_file(dir + "/links.csv", links);
  std::string metros = "name,country,requests,mean_ttft_ms,slo_attainment\n";
  for (std::size_t m = 0; m < w.metros.size(); ++m) {
    const auto n = r.metro_requests[m];
    metros += fmt::format("\"{}\",\"{}\",{},{:.1f},{:.4f}\n", w.metros[m].name, w.metros[m].country, n,
                          n ? r.metro_ttft_sum[m] / static_cast<double>(n) : 0.0,
                          n ? static_cast<double>(r.metro_met_slo[m]) / static_cast<double>(n) : 0.0);
  }
  write_file(dir + "/metros.csv", metros);
  std::string stale = "artifact,site,published_s,ready_s,staleness_s\n";
  for (const auto& s : r.staleness)
    stale += s.ready_s >= 0 ? fmt::format("{},{},{:.3f},{:.3f},{:.3f}\n", s.artifact, s.site, s.published_s, s.ready_s,
                                          s.ready_s - s.published_s)
                            : fmt::format("{},{},{:.3f},,\n", s.artifact, s.site, s.published_s);
  write_file(dir + "/staleness.csv", stale);
  std::string fleet = "t_s,site,ready,starting,draining,powered_gpus,it_kw,facility_kw,budget_kw,cap,saturation\n";
  for (const auto& f : r.fleet_rows)
    fleet += fmt::format("{:.0f},{},{},{},{},{},{:.3f},{:.3f},{:.1f},{:.2f},{:.3f}\n", f.t_s, w.sites[static_cast<std::size_t>(f.site)].id,
                         f.ready, f.starting, f.draining, f.gpus, f.it_kw, f.facility_kw, f.budget_kw, f.cap, f.saturation);
  write_file(dir + "/fleet.csv", fleet);
  std::string l1 = "t_h,a,b,p50_1s,p95_1s,p99_1s\n";
  for (const auto& b : r.buckets)
    for (std::size_t l = 0; l < b.link_1s.size() && l < w.links.size(); ++l)
      l1 += fmt::format("{:.4f},{},{},{:.2f},{:.2f},{:.2f}\n", b.t_s / 3600, w.sites[static_cast<std::size_t>(w.links[l].a)].id,
                        w.sites[static_cast<std::size_t>(w.links[l].b)].id, b.link_1s[l][0], b.link_1s[l][1], b.link_1s[l][2]);
  write_file(dir + "/links_1s.csv", l1);
  write_file(dir + "/demand.csv", demand_csv(r));
  const std::string report = dir + "/report.html";
  write_file(report, report_html(w, cfg, r));
  return report;
}

}  // namespace infergrid::twin
