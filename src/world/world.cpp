#include "world/world.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <cmath>
#include <set>

#include "core/csv.hpp"
#include "core/error.hpp"
#include "core/paths.hpp"
#include "model/perf_model.hpp"
#include "workload/trace.hpp"
#include "world/yaml_fields.hpp"

namespace infergrid::world {

using core::fail_input;

const char* tier_name(Tier t) {
  switch (t) {
    case Tier::kCore:
      return "core";
    case Tier::kRegional:
      return "regional";
    case Tier::kEdge:
      return "edge";
  }
  return "?";
}

int World::site_index(const std::string& id) const {
  for (std::size_t i = 0; i < sites.size(); ++i)
    if (sites[i].id == id) return static_cast<int>(i);
  return -1;
}
int World::metro_index(const std::string& n) const {
  for (std::size_t i = 0; i < metros.size(); ++i)
    if (metros[i].name == n) return static_cast<int>(i);
  return -1;
}
int World::link_index(int a, int b) const {
  for (std::size_t i = 0; i < links.size(); ++i)
    if ((links[i].a == a && links[i].b == b) || (links[i].a == b && links[i].b == a))
      return static_cast<int>(i);
  return -1;
}

std::string default_world_path() { return core::data_dir() + "/world/default.yaml"; }

namespace {

YAML::Node need_list(const std::string& file, const YAML::Node& parent, Fields& f, const std::string& k,
                     bool required) {
  const YAML::Node n = f.node(k);
  if (!n) {
    if (required) fail_input(file, Fields::line(parent), k, "missing");
    return n;
  }
  if (!n.IsSequence()) fail_input(file, Fields::line(n), k, "expected a list");
  return n;
}

std::vector<std::string> str_list(const std::string& file, const YAML::Node& n, const std::string& k) {
  std::vector<std::string> out;
  if (!n) return out;
  if (!n.IsSequence()) fail_input(file, Fields::line(n), k, "expected a list");
  for (const auto& e : n) {
    if (!e.IsScalar()) fail_input(file, Fields::line(e), k, "expected a list of names");
    out.push_back(e.Scalar());
  }
  return out;
}

void read_site(const std::string& file, const YAML::Node& n, const model::Catalog& catalog, World& w) {
  Fields f(file, n, "sites");
  Site s;
  s.id = f.str("id", "", true);
  if (w.site_index(s.id) >= 0) fail_input(file, Fields::line(n), "id", fmt::format("duplicate site '{}'", s.id));
  s.pos.lat = f.num("lat", 0, true, -90, 90);
  s.pos.lon = f.num("lon", 0, true, -180, 180);
  const std::string tier = f.str("tier", "regional");
  if (tier == "core") s.tier = Tier::kCore;
  else if (tier == "regional") s.tier = Tier::kRegional;
  else if (tier == "edge") s.tier = Tier::kEdge;
  else fail_input(file, Fields::line(f.node("tier")), "tier", "expected core, regional or edge");
  s.power_cap_kw = f.num("power_cap_kw", 0, true, 0);
  s.pue = f.num("pue", 1.2, false, 1.0, 3.0);
  s.carbon_g_per_kwh = f.num("carbon_g_per_kwh", 400, false, 0, 2000);
  const YAML::Node acc = f.node("accelerators");
  if (!acc || !acc.IsMap()) fail_input(file, Fields::line(acc ? acc : n), "accelerators", "expected a map type: count");
  for (auto it = acc.begin(); it != acc.end(); ++it) {
    const std::string type = it->first.Scalar();
    if (!catalog.has_accelerator(type))
      fail_input(file, Fields::line(it->first), "accelerators", fmt::format("unknown accelerator '{}'", type));
    int count = -1;
    try {
      count = it->second.as<int>();
    } catch (const YAML::Exception&) {
    }
    if (count < 0) fail_input(file, Fields::line(it->second), "accelerators", "expected a count >= 0");
    s.accelerators[type] = count;
  }
  std::map<std::string, std::int64_t> used;  // tp x replicas: each up to 1e8, so not in an int
  const YAML::Node deps = need_list(file, n, f, "deployments", true);
  for (const auto& d : deps) {
    Fields g(file, d, "deployments");
    Deployment dep;
    dep.model = g.str("model", "", true);
    dep.accelerator = g.str("accelerator", "", true);
    dep.tp = g.integer("tp", 1, false, 1);
    dep.ep = g.integer("ep", 1, false, 1);
    dep.replicas = g.integer("replicas", 1, false, 0);
    dep.decode_at = g.str("decode_at", "");
    const auto line = Fields::line(d);
    dep.line = static_cast<int>(line);
    const auto names = catalog.model_names();
    if (std::find(names.begin(), names.end(), dep.model) == names.end())
      fail_input(file, line, "model", fmt::format("unknown model '{}'", dep.model));
    if (!s.accelerators.count(dep.accelerator))
      fail_input(file, line, "accelerator",
                 fmt::format("site '{}' holds no '{}' (add it under accelerators)", s.id, dep.accelerator));
    double kv_tokens = 0;
    try {
      const model::PerfModel pm(catalog.llm(dep.model), catalog.accelerator(dep.accelerator), dep.tp, 1.0, dep.ep);
      kv_tokens = pm.kv_capacity_tokens(0.9);
    } catch (const core::InputError& e) {
      if (dep.ep > 1 && std::string(e.what()).find("--ep") != std::string::npos) fail_input(file, line, "ep", e.what());
      kv_tokens = 0;
    }
    if (kv_tokens < 1024)
      fail_input(file, line, "model",
                 fmt::format("{} does not fit on {} x {} (weights {:.0f} GB; memory {:.0f} GB)", dep.model,
                             dep.gpus(), dep.accelerator, catalog.llm(dep.model).weight_bytes() / 1e9,
                             dep.gpus() * catalog.accelerator(dep.accelerator).hbm_bytes / 1e9));
    used[dep.accelerator] += std::int64_t{dep.gpus()} * dep.replicas;
    if (used[dep.accelerator] > s.accelerators[dep.accelerator])
      fail_input(file, line, "replicas",
                 fmt::format("site '{}' deploys {} x {} but holds {}", s.id, used[dep.accelerator],
                             dep.accelerator, s.accelerators[dep.accelerator]));
    s.deployments.push_back(dep);
  }
  s.shards = str_list(file, f.node("shards"), "shards");
  w.sites.push_back(std::move(s));
}

void read_class(const std::string& file, const YAML::Node& n, World& w) {
  Fields f(file, n, "classes");
  TrafficClass c;
  c.name = f.str("name", "", true);
  c.share = f.num("share", 0, true, 0, 1);
  const std::string prio = f.str("priority", "interactive");
  if (prio == "critical") c.priority = workload::Priority::kCritical;
  else if (prio == "interactive") c.priority = workload::Priority::kInteractive;
  else if (prio == "batch") c.priority = workload::Priority::kBatch;
  else fail_input(file, Fields::line(f.node("priority")), "priority", "expected critical, interactive or batch");
  c.model = f.str("model", "", true);
  c.prompt = f.dist("prompt", "lognormal:1000:1");
  c.output = f.dist("output", "lognormal:250:1");
  if (f.has("images")) c.images = f.dist("images", "fixed:1");
  c.tokens_per_image = f.num("tokens_per_image", 0);
  c.mb_per_image = f.num("mb_per_image", 0);
  c.audio_fraction = f.num("audio_fraction", 0, false, 0, 1);
  c.audio_mb = f.num("audio_mb", 0);
  c.audio_tokens = f.num("audio_tokens", 0);
  c.video_fraction = f.num("video_fraction", 0, false, 0, 1);
  c.video_mb = f.num("video_mb", 0);
  c.video_tokens = f.num("video_tokens", 0);
  if (f.has("retrievals")) c.retrievals = f.dist("retrievals", "fixed:1");
  c.retrieval_mb = f.num("retrieval_mb", 0);
  c.retrieval_tokens = f.num("retrieval_tokens", 0);
  c.retrieval_compute_ms = f.num("retrieval_compute_ms", 0);
  c.session_continue = f.num("session_continue", 0, false, 0, 1);
  c.slo_ttft_ms = f.num("slo_ttft_ms", 0);
  c.slo_tpot_ms = f.num("slo_tpot_ms", 0);
  w.workload.classes.push_back(std::move(c));
}

void read_events(const std::string& file, const YAML::Node& list, World& w) {
  for (const auto& n : list) {
    Fields f(file, n, "events");
    Event e;
    e.line = static_cast<int>(Fields::line(n));
    const std::string kind = f.str("kind", "", true);
    e.at = f.duration("at", 0, true);
    e.duration = f.duration("duration", 0);
    auto site = [&](const std::string& k) {
      const std::string id = f.str(k, "", true);
      const int i = w.site_index(id);
      if (i < 0) fail_input(file, Fields::line(f.node(k)), k, fmt::format("unknown site '{}'", id));
      return i;
    };
    auto link = [&]() {
      const int a = site("a"), b = site("b");
      const int l = w.link_index(a, b);
      if (l < 0) fail_input(file, e.line, "b", fmt::format("no link between '{}' and '{}'", w.sites[a].id, w.sites[b].id));
      return l;
    };
    if (kind == "outage") {
      e.kind = Event::Kind::kOutage, e.site = site("site");
    } else if (kind == "capacity") {
      e.kind = Event::Kind::kCapacity, e.site = site("site"), e.factor = f.num("factor", 0.5, true, 0, 1);
    } else if (kind == "link_cut") {
      e.kind = Event::Kind::kLinkCut, e.link = link(), e.factor = 0;
    } else if (kind == "link_capacity") {
      e.kind = Event::Kind::kLinkCapacity, e.link = link(), e.factor = f.num("factor", 0.5, true, 0, 1);
    } else if (kind == "surge") {
      e.kind = Event::Kind::kSurge;
      e.factor = f.num("factor", 2, true, 0, 1000);
      if (f.has("metro")) {
        const std::string m = f.str("metro");
        e.metro = w.metro_index(m);
        if (e.metro < 0) fail_input(file, Fields::line(f.node("metro")), "metro", fmt::format("unknown metro '{}'", m));
      } else {
        e.country = f.str("country", "", true);
        bool any = false;
        for (const auto& m : w.metros) any |= m.country == e.country;
        if (!any) fail_input(file, Fields::line(f.node("country")), "country", fmt::format("no metro in '{}'", e.country));
      }
    } else if (kind == "publish") {
      e.kind = Event::Kind::kPublish;
      const std::string r = f.str("repo", "", true);
      for (std::size_t i = 0; i < w.repositories.size(); ++i)
        if (w.repositories[i].id == r) e.repo = static_cast<int>(i);
      if (e.repo < 0) fail_input(file, Fields::line(f.node("repo")), "repo", fmt::format("unknown repository '{}'", r));
      e.artifact = f.str("artifact", "", true);
      e.model = f.str("model", "");
      e.size_gb = f.num("size_gb", 0, true, 0, 1e6);
      e.roll = f.flag("roll", false);
      if (e.roll && e.model.empty()) fail_input(file, e.line, "roll", "rolling replicas needs the model the artifact is");
    } else if (kind == "power_cap") {
      e.kind = Event::Kind::kPowerCap, e.site = site("site"), e.factor = f.num("factor", 0.6, true, 0.01, 1);
      if (w.sites[static_cast<std::size_t>(e.site)].power_cap_kw <= 0)
        fail_input(file, e.line, "site", fmt::format("site '{}' has no power_cap_kw to lower", w.sites[e.site].id));
    } else {
      fail_input(file, Fields::line(f.node("kind")), "kind",
                 fmt::format("unknown event kind '{}' (outage, capacity, link_cut, link_capacity, surge, publish, power_cap)", kind));
    }
    w.events.push_back(std::move(e));
  }
}

}  // namespace

std::vector<double> trace_rhythm(const std::string& path, const std::string& format) {
  const auto f = format.empty() ? workload::detect_trace_format(path) : workload::parse_trace_format(format);
  auto src = workload::open_trace(path, f);
  std::vector<double> counts;
  workload::Request r;
  core::Ns first = -1;
  while (src->next(r)) {
    if (first < 0) first = r.arrival;
    const auto minute = static_cast<std::size_t>((r.arrival - first) / (60 * core::kNsPerSec));
    if (minute >= 60 * 24 * 30) break;  // a month is enough rhythm
    if (counts.size() <= minute) counts.resize(minute + 1, 0);
    counts[minute] += 1;
  }
  if (counts.size() < 2) fail_input(path, 0, "", "a rhythm needs a trace of at least two minutes");
  counts.pop_back();  // the last minute is partial
  double mean = 0;
  for (double c : counts) mean += c;
  mean /= static_cast<double>(counts.size());
  for (double& c : counts) c /= mean;
  return counts;
}

// Demand by market (docs/planet.md "Demand"): `markets: {shares: {COUNTRY: FRACTION}, exclude:
// [COUNTRY]}`. A listed country's share goes to its metros by population; what the shares leave
// goes to the unlisted countries' metros by population; excluded countries get none. Without
// the section, demand follows population.
static void set_demand_weights(const std::string& path, Fields& f, World& w) {
  std::map<std::string, double> share;
  std::set<std::string> excluded;
  if (f.has("markets")) {
    Fields g(path, f.node("markets"), "markets");
    if (g.has("shares")) {
      const YAML::Node s = g.node("shares");
      if (!s.IsMap()) fail_input(path, Fields::line(s), "markets.shares", "expected a map of country -> fraction of requests");
      double sum = 0;
      for (auto it = s.begin(); it != s.end(); ++it) {
        double v = -1;
        try {
          v = it->second.as<double>();
        } catch (const YAML::Exception&) {
        }
        const std::string c = it->first.Scalar();
        if (!(v >= 0 && v <= 1))
          fail_input(path, Fields::line(it->first), "markets.shares." + c, "expected a fraction in [0, 1]");
        share[c] = v;
        sum += v;
      }
      if (sum > 1 + 1e-9) fail_input(path, Fields::line(s), "markets.shares", fmt::format("shares sum to {:.4f}, more than 1", sum));
    }
    if (g.has("exclude")) {
      const YAML::Node e = g.node("exclude");
      if (!e.IsSequence()) fail_input(path, Fields::line(e), "markets.exclude", "expected a list of countries");
      for (const auto& c : e) excluded.insert(c.as<std::string>());
    }
  }
  std::map<std::string, double> country_pop;
  double unlisted_pop = 0, listed = 0;
  for (const auto& m : w.metros) {
    if (excluded.count(m.country)) continue;
    if (share.count(m.country)) country_pop[m.country] += m.population;
    else unlisted_pop += m.population;
  }
  for (const auto& [c, p] : country_pop) listed += share[c];
  const double rest = std::max(0.0, 1 - listed);
  double total = 0;
  for (auto& m : w.metros) {
    if (excluded.count(m.country)) m.demand_weight = 0;
    else if (share.empty()) m.demand_weight = m.population;  // as before markets existed
    else if (share.count(m.country)) m.demand_weight = share[m.country] * m.population / country_pop[m.country];
    else m.demand_weight = unlisted_pop > 0 ? rest * m.population / unlisted_pop : 0;
    total += m.demand_weight;
  }
  if (!(total > 0)) fail_input(path, Fields::line(f.node("metros")), "markets", "no metro is left with demand");
  if (!share.empty() || !excluded.empty())
    for (auto& m : w.metros) m.demand_weight /= total;
}

// A prefill deployment's decode site: another site with a deployment of the same model that
// decodes where it is (no chains).
static void resolve_decode_sites(const std::string& file, World& w) {
  for (auto& s : w.sites)
    for (auto& d : s.deployments) {
      if (d.decode_at.empty()) continue;
      const int k = w.site_index(d.decode_at);
      if (k < 0) fail_input(file, d.line, "decode_at", fmt::format("unknown site '{}'", d.decode_at));
      if (w.sites[static_cast<std::size_t>(k)].id == s.id)
        fail_input(file, d.line, "decode_at", "names its own site: prefill and decode at one site need no decode_at");
      bool serves = false;
      for (const auto& o : w.sites[static_cast<std::size_t>(k)].deployments)
        serves |= o.model == d.model && o.decode_at.empty();
      if (!serves)
        fail_input(file, d.line, "decode_at",
                   fmt::format("site '{}' has no deployment of {} that decodes there", d.decode_at, d.model));
      d.decode_site = k;
    }
}

World load_world(const std::string& path, const model::Catalog& catalog) {
  const YAML::Node root = load_yaml_file(path);
  World w;
  w.file = path;
  try {
    Fields f(path, root, "world");
    w.name = f.str("name", "world");
    w.route_factor = f.num("route_factor", 1.68, false, 1.0, 5.0);
    w.per_hop_ms = f.num("per_hop_ms", 0.1, false, 0, 100);
    w.scale = f.num("scale", 1, false, 1, 1e6);
    for (const auto& s : need_list(path, root, f, "sites", true)) read_site(path, s, catalog, w);
    if (w.sites.empty()) fail_input(path, Fields::line(root), "sites", "at least one site");
    resolve_decode_sites(path, w);
    for (const auto& n : need_list(path, root, f, "links", false)) {
      Fields g(path, n, "links");
      Link l;
      const std::string a = g.str("a", "", true), b = g.str("b", "", true);
      l.a = w.site_index(a);
      l.b = w.site_index(b);
      if (l.a < 0) fail_input(path, Fields::line(n), "a", fmt::format("unknown site '{}'", a));
      if (l.b < 0) fail_input(path, Fields::line(n), "b", fmt::format("unknown site '{}'", b));
      if (l.a == l.b) fail_input(path, Fields::line(n), "b", "a link needs two different sites");
      if (w.link_index(l.a, l.b) >= 0) fail_input(path, Fields::line(n), "b", "duplicate link");
      l.gbps = g.num("gbps", 400, true, 1, 1e6);
      const double gc = core::great_circle_km(w.sites[l.a].pos, w.sites[l.b].pos);
      l.km = g.num("km", gc * w.route_factor, false, 0, 1e5);
      // Coherent pluggables: about 20 W at 400G, 30 W at 800G, 45 W at 1.6T per end.
      // At a 1:scale model the link stands for one scale times as wide: its real rate sets the
      // pluggable, whose power counts at the model's scale like every other watt.
      const double real_gbps = l.gbps * w.scale;
      l.transceiver_w = g.num("transceiver_w", (real_gbps <= 400 ? 20 : real_gbps <= 800 ? 30 : 45) / w.scale);
      if (g.has("bulk_load")) l.bulk_load = g.num("bulk_load", 0, true, 0, 1);
      w.links.push_back(l);
    }
    for (const auto& n : need_list(path, root, f, "metros", true)) {
      Fields g(path, n, "metros");
      Metro m;
      m.name = g.str("name", "", true);
      m.country = g.str("country", "");
      m.pos.lat = g.num("lat", 0, true, -90, 90);
      m.pos.lon = g.num("lon", 0, true, -180, 180);
      m.population = g.num("population", 0, true, 1);
      m.utc_offset_h = g.num("utc_offset", 0, false, -12, 14);
      m.last_mile_ms = g.num("last_mile_ms", 8, false, 0, 1000);
      m.uplink_gbps = g.num("uplink_gbps", 100 / w.scale, false, 0.001, 1e6);
      w.metros.push_back(std::move(m));
    }
    set_demand_weights(path, f, w);
    for (const auto& n : need_list(path, root, f, "repositories", false)) {
      Fields g(path, n, "repositories");
      Repository r;
      r.id = g.str("id", "", true);
      const std::string s = g.str("site", "", true);
      r.site = w.site_index(s);
      if (r.site < 0) fail_input(path, Fields::line(n), "site", fmt::format("unknown site '{}'", s));
      w.repositories.push_back(r);
    }
    // The workload.
    if (!f.has("workload")) fail_input(path, Fields::line(root), "workload", "missing");
    const YAML::Node wl = f.node("workload");
    Fields g(path, wl, "workload");
    w.workload.requests_per_day = g.num("requests_per_day", 1e6, true, 1, 1e11);
    const YAML::Node di = g.node("diurnal");
    w.workload.diurnal.fill(1.0);
    if (di) {
      if (!di.IsSequence() || di.size() != 24)
        fail_input(path, Fields::line(di), "diurnal", "expected 24 numbers (relative demand by local hour)");
      double sum = 0;
      for (std::size_t h = 0; h < 24; ++h) {
        double v = -1;
        try {
          v = di[h].as<double>();
        } catch (const YAML::Exception&) {
        }
        if (!(v >= 0)) fail_input(path, Fields::line(di[h]), "diurnal", "expected a number >= 0");
        w.workload.diurnal[h] = v;
        sum += v;
      }
      if (sum <= 0) fail_input(path, Fields::line(di), "diurnal", "needs some demand");
      for (auto& v : w.workload.diurnal) v *= 24 / sum;
    }
    if (g.has("arrival_trace")) {
      std::string tp = g.str("arrival_trace");
      const std::string fmt = g.str("arrival_trace_format", "");
      const auto line = Fields::line(g.node("arrival_trace"));
      if (!tp.empty() && tp[0] != '/') {  // relative: beside the world file, else in data/
        const auto beside = std::filesystem::path(path).parent_path() / tp;
        tp = std::filesystem::exists(beside) ? beside.string() : core::data_dir() + "/" + tp;
      }
      try {
        w.workload.rhythm = trace_rhythm(tp, fmt);
      } catch (const core::InputError& e) {
        fail_input(path, line, "arrival_trace", e.what());
      }
      w.workload.rhythm_source = std::filesystem::path(tp).filename().string();
    }
    const YAML::Node classes = need_list(path, wl, g, "classes", true);
    for (const auto& c : classes) read_class(path, c, w);
    double share = 0;
    for (const auto& c : w.workload.classes) {
      share += c.share;
      bool served = false;
      for (const auto& s : w.sites)
        for (const auto& d : s.deployments) served |= d.model == c.model && d.replicas > 0;
      if (!served) fail_input(path, Fields::line(classes), "model", fmt::format("class '{}': no site deploys '{}'", c.name, c.model));
      if (c.retrievals.mean() > 0) {
        bool shards = false;
        for (const auto& s : w.sites) shards |= !s.shards.empty();
        if (!shards) fail_input(path, Fields::line(classes), "retrievals", fmt::format("class '{}' retrieves but no site holds shards", c.name));
      }
    }
    if (std::abs(share - 1) > 1e-6)
      fail_input(path, Fields::line(classes), "share", fmt::format("class shares sum to {}, not 1", share));
    if (f.has("fleet")) {
      Fields g(path, f.node("fleet"), "fleet");
      w.fleet.load_gb_s = g.num("load_gb_s", w.fleet.load_gb_s, false, 0.001, 1e4);
      w.fleet.warmup_s = g.num("warmup_s", w.fleet.warmup_s, false, 0, 86400);
      if (g.has("host_w_per_gpu")) w.fleet.host_w_per_gpu = g.num("host_w_per_gpu", 0, true, 0, 1e5);
      w.fleet.power_window_s = g.num("power_window_s", w.fleet.power_window_s, false, 1, 3600);
      w.fleet.kv_host_gb_per_gpu = g.num("kv_host_gb_per_gpu", w.fleet.kv_host_gb_per_gpu, false, 0, 1e5);
      w.fleet.kv_host_gb_s = g.num("kv_host_gb_s", w.fleet.kv_host_gb_s, false, 0.001, 1e4);
      w.fleet.kv_ssd_gb_per_gpu = g.num("kv_ssd_gb_per_gpu", w.fleet.kv_ssd_gb_per_gpu, false, 0, 1e6);
      w.fleet.kv_ssd_gb_s = g.num("kv_ssd_gb_s", w.fleet.kv_ssd_gb_s, false, 0.001, 1e4);
    }
    if (f.has("bulk")) {
      Fields g(path, f.node("bulk"), "bulk");
      w.bulk.load = g.num("load", w.bulk.load, false, 0, 1);
      w.bulk.copy_gb = g.num("copy_gb", w.bulk.copy_gb, false, 1e-6, 1e6);
    }
    if (f.has("control")) {
      const YAML::Node c = f.node("control");
      if (!c.IsMap()) fail_input(path, Fields::line(c), "control", "expected a map of controller -> parameters");
      for (auto it = c.begin(); it != c.end(); ++it) {
        const std::string name = it->first.Scalar();
        if (!it->second.IsMap()) fail_input(path, Fields::line(it->second), name, "expected a map of parameter -> number");
        auto& params = w.control[name];
        w.control_line[name] = static_cast<int>(Fields::line(it->first));
        for (auto p = it->second.begin(); p != it->second.end(); ++p) {
          double v = 0;
          try {
            v = p->second.as<double>();
          } catch (const YAML::Exception&) {
            fail_input(path, Fields::line(p->second), p->first.Scalar(), "expected a number");
          }
          if (!std::isfinite(v) || v < 0) fail_input(path, Fields::line(p->second), p->first.Scalar(), "must be a finite number >= 0");
          params[p->first.Scalar()] = v;
        }
      }
    }
    if (f.has("events")) read_events(path, need_list(path, root, f, "events", false), w);
  } catch (const YAML::Exception& e) {
    fail_input(path, e.mark.line + 1, "", e.msg);
  }
  return w;
}

void load_scenario(const std::string& path, World& w) {
  const YAML::Node root = load_yaml_file(path);
  try {
    Fields f(path, root, "scenario");
    f.str("name", "");
    const std::size_t before = w.events.size();
    // A scenario may disaggregate deployments across sites (a plan to try): for the whole run,
    // {site, model, decode_at}; events are optional then.
    const bool splits = f.has("disaggregate");
    for (const auto& n : need_list(path, root, f, "disaggregate", false)) {
      Fields g(path, n, "disaggregate");
      const std::string site = g.str("site", "", true), model = g.str("model", "", true);
      const int s = w.site_index(site);
      if (s < 0) fail_input(path, Fields::line(n), "site", fmt::format("unknown site '{}'", site));
      world::Deployment* dep = nullptr;
      for (auto& d : w.sites[static_cast<std::size_t>(s)].deployments)
        if (d.model == model) dep = &d;
      if (!dep) fail_input(path, Fields::line(n), "model", fmt::format("site '{}' deploys no {}", site, model));
      dep->decode_at = g.str("decode_at", "", true);
      dep->line = static_cast<int>(Fields::line(n));
    }
    if (splits) resolve_decode_sites(path, w);
    if (!splits || f.has("events")) read_events(path, need_list(path, root, f, "events", !splits), w);
    for (std::size_t i = before; i < w.events.size(); ++i) w.events[i].from_scenario = true;
  } catch (const YAML::Exception& e) {
    fail_input(path, e.mark.line + 1, "", e.msg);
  }
}

}  // namespace infergrid::world
