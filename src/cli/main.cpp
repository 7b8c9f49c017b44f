// The `infergrid` command: sim, perf, calibrate, catalog.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <nlohmann/json.hpp>

#include "cli/forecast_cmd.hpp"
#include "core/csv.hpp"
#include "core/error.hpp"
#include "core/paths.hpp"
#include "model/calibrate.hpp"
#include "model/catalog.hpp"
#include "model/perf_model.hpp"
#include "sim/site_sim.hpp"
#include "sim/summary.hpp"
#include "te/solver.hpp"
#include "net/latency.hpp"
#include "core/geo.hpp"
#include "net/fiber.hpp"
#include "workload/generator.hpp"
#include "workload/trace.hpp"
#include "serve/demo.hpp"
#include "serve/engine_server.hpp"
#include "serve/gateway.hpp"
#include "twin/output.hpp"
#include "sweep/sweep.hpp"
#include "twin/planet.hpp"
#include "world/world.hpp"

namespace ig = infergrid;

namespace {

struct Common {
  std::string model = "llama2-70b", gpu = "h100-80gb", catalog_file;
  int tp = 8;
  int ep = 1;
  double power_cap = 1.0;
  void add(CLI::App* app) {
    app->add_option("--model", model, "model name (see `infergrid catalog`)");
    app->add_option("--gpu", gpu, "accelerator name");
    app->add_option("--tp", tp, "tensor-parallel degree");
    app->add_option("--ep", ep, "expert-parallel degree (MoE models): GPUs per replica, attention data-parallel in groups of --tp");
    app->add_option("--power-cap", power_cap, "power cap as a fraction of board power (0, 1]");
    app->add_option("--catalog", catalog_file, "YAML file adding or overriding catalog entries");
  }
  ig::model::Catalog catalog() const {
    auto c = ig::model::Catalog::builtin();
    if (!catalog_file.empty()) c.load_yaml(catalog_file);
    return c;
  }
};

class Progress {
 public:
  explicit Progress(bool on) : on_(on && isatty(STDERR_FILENO)) {}
  void operator()(double f) {
    if (!on_ || f < 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (f < 1 && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    const int w = 40, n = static_cast<int>(f * w);
    std::fprintf(stderr, "\r[%s%s] %3.0f%%", std::string(n, '#').c_str(),
                 std::string(w - n, '.').c_str(), 100 * f);
    if (f >= 1) std::fprintf(stderr, "\n");
  }

 private:
  bool on_;
  std::chrono::steady_clock::time_point last_{};
};

struct PlanetArgs {
  std::string world, scenario, arrival_trace;
  ig::twin::PlanetConfig cfg;
};

int cmd_planet(const Common& common, PlanetArgs a, const std::string& out, bool progress_on) {
  const auto catalog = common.catalog();
  if (a.world.empty()) a.world = ig::world::default_world_path();
  // A shipped world by name (planet-full: data/world/planet-full.yaml).
  if (a.world.find('/') == std::string::npos && a.world.find('.') == std::string::npos)
    a.world = ig::core::data_dir() + "/world/" + a.world + ".yaml";
  auto world = ig::world::load_world(a.world, catalog);
  if (!a.scenario.empty()) ig::world::load_scenario(a.scenario, world);
  if (!a.arrival_trace.empty()) {
    world.workload.rhythm = ig::world::trace_rhythm(a.arrival_trace);
    world.workload.rhythm_source = std::filesystem::path(a.arrival_trace).filename().string();
  }
  ig::twin::PlanetSim sim(world, catalog, a.cfg);
  const bool bar_on = progress_on && isatty(STDERR_FILENO);
  auto last = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  const auto t0 = std::chrono::steady_clock::now();
  const double hours = a.cfg.hours;
  const auto res = sim.run([&](double f, std::uint64_t arrived) {
    if (!bar_on) return;
    const auto now = std::chrono::steady_clock::now();
    if (f < 1 && now - last < std::chrono::milliseconds(250)) return;
    last = now;
    const int w = 40, n = std::clamp(static_cast<int>(f * w), 0, w);
    const double el = std::chrono::duration<double>(now - t0).count();
    std::fprintf(stderr, "\r[%s%s] %3.0f%%  sim %5.1f h  %6.2f M requests  %4.0f s", std::string(n, '#').c_str(),
                 std::string(w - n, '.').c_str(), 100 * f, f * hours, arrived / 1e6, el);
    if (f >= 1) std::fprintf(stderr, "\n");
  });
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string report = ig::twin::write_planet_outputs(out, world, a.cfg, res);
  std::cout << ig::twin::planet_summary_text(world, res);
  std::cout << fmt::format("simulated {:.1f} h of world '{}' ({} sites, {} links, {} metros): {} requests in "
                           "{:.1f} s of wall time ({:.0f} requests/s)\n",
                           a.cfg.hours, world.name, world.sites.size(), world.links.size(), world.metros.size(),
                           res.arrived, wall, res.arrived / std::max(wall, 1e-9));
  std::cout << fmt::format("wrote {0}/summary.json, {0}/timeseries.csv, {0}/sites.csv, {0}/links.csv, "
                           "{0}/metros.csv, {0}/staleness.csv, {0}/fleet.csv, {0}/links_1s.csv, {0}/demand.csv\nreport: {1}\n",
                           out, report);
  return res.arrived == res.completed + res.rejected + res.lost ? 0 : 1;
}

int cmd_sim(const Common& common, const std::map<std::string, std::string>& s,
            const ig::sim::SiteConfig& site_in, const ig::workload::GeneratorSpec& gen,
            bool use_generator, bool requests_csv, bool progress_on) {
  const auto catalog = common.catalog();
  auto pm = std::make_shared<ig::model::PerfModel>(catalog.llm(common.model),
                                                  catalog.accelerator(common.gpu), common.tp,
                                                  common.power_cap, common.ep);
  ig::sim::SiteConfig site = site_in;
  std::int64_t kv = site.engine.kv_capacity_tokens > 0
                        ? site.engine.kv_capacity_tokens
                        : static_cast<std::int64_t>(pm->kv_capacity_tokens(site.engine.gpu_memory_utilization));
  if (kv < site.engine.block_size)
    ig::core::fail_flag("gpu-memory-utilization", "leaves no room for the KV cache");
  std::unique_ptr<ig::workload::RequestSource> source;
  std::string trace_desc;
  if (use_generator) {
    source = ig::workload::make_generator(gen);
    trace_desc = "generated";
  } else {
    const std::string& path = s.at("trace");
    const auto fmt = s.at("trace_format").empty() ? ig::workload::detect_trace_format(path)
                                                  : ig::workload::parse_trace_format(s.at("trace_format"));
    source = ig::workload::open_trace(path, fmt);
    trace_desc = std::filesystem::path(path).filename().string();
  }
  const std::string out = s.at("out");
  std::filesystem::create_directories(out);
  ig::sim::Metrics metrics({std::stod(s.at("slo_ttft")), std::stod(s.at("slo_tpot"))});
  if (requests_csv) metrics.open_requests_csv(out + "/requests.csv");
  ig::sim::SiteSim sim(pm, kv, site);
  Progress bar(progress_on);
  const auto t0 = std::chrono::steady_clock::now();
  const auto res = sim.run(*source, metrics, [&](double f) { bar(f); });
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  metrics.close();
  ig::sim::RunInfo info;
  info.prefix_caching = site.engine.enable_prefix_caching;
  info.config = {{"trace", trace_desc},
                 {"model", common.model},
                 {"gpu", common.gpu},
                 {"tp", std::to_string(common.tp)},
                 {"replicas", std::to_string(site.replicas)},
                 {"router", site.router},
                 {"seed", std::to_string(site.seed)},
                 {"power_cap", fmt::format("{}", common.power_cap)},
                 {"max_num_seqs", std::to_string(site.engine.max_num_seqs)},
                 {"max_num_batched_tokens", std::to_string(site.engine.max_num_batched_tokens)},
                 {"block_size", std::to_string(site.engine.block_size)},
                 {"kv_capacity_tokens", std::to_string(kv)}};
  std::ofstream(out + "/summary.json") << ig::sim::summary_json(info, res, metrics);
  std::cout << ig::sim::summary_text(res, metrics);
  std::cout << fmt::format("simulated {} requests in {:.2f} s of wall time ({:.0f} requests/s); "
                           "wrote {}/summary.json{}\n",
                           res.arrived, wall, res.arrived / std::max(wall, 1e-9), out,
                           requests_csv ? fmt::format(" and {}/requests.csv", out) : "");
  return 0;
}

int cmd_perf(const Common& common, int prompt, int batch, int output, const std::string& reservation,
             int max_model_len, double util) {
  const auto catalog = common.catalog();
  const ig::model::PerfModel pm(catalog.llm(common.model), catalog.accelerator(common.gpu),
                                common.tp, common.power_cap, common.ep);
  ig::model::KvReservation r = ig::model::KvReservation::kPaged;
  if (reservation == "static") r = ig::model::KvReservation::kStatic;
  else if (reservation != "paged") ig::core::fail_flag("kv-reservation", "must be paged or static");
  const auto p = ig::model::predict_isolated_batch(pm, prompt, batch, output, r, max_model_len, util);
  nlohmann::ordered_json j;
  j["model"] = common.model;
  j["gpu"] = common.gpu;
  j["tp"] = common.tp;
  j["prompt"] = prompt;
  j["batch"] = batch;
  j["output_tokens"] = output;
  j["power_cap"] = common.power_cap;
  j["prompt_time_ms"] = p.prompt_time_ms;
  j["token_time_ms"] = p.token_time_ms;
  j["e2e_time_ms"] = p.e2e_time_ms;
  j["concurrent_sequences"] = p.wave;
  j["energy_j"] = p.energy_j;
  j["kv_capacity_tokens"] = pm.kv_capacity_tokens(util);
  std::cout << j.dump(2) << "\n";
  return 0;
}

int cmd_calibrate(const Common& common, const std::string& data, bool fit, const std::string& md) {
  auto catalog = common.catalog();
  const auto groups = ig::model::load_measurements(data);
  if (fit) {
    std::set<std::string> gpus;
    for (const auto& g : groups) gpus.insert(g.gpu);
    for (const auto& gpu : gpus) {
      const auto c = ig::model::fit_calibration(catalog, gpu, groups);
      fmt::print("{}: compute_eff {:.4f}  memory_eff {:.4f}  allreduce_latency_us {:.2f}  "
                 "allreduce_bw_eff {:.4f}  decode_overhead_ms {:.3f}  prefill_overhead_ms {:.3f}  "
                 "prefill_seq_overhead_ms {:.3f}\n",
                 gpu, c.compute_eff, c.memory_eff, c.allreduce_latency_s * 1e6, c.allreduce_bw_eff,
                 c.decode_overhead_s * 1e3, c.prefill_overhead_s * 1e3,
                 c.prefill_seq_overhead_s * 1e3);
      auto a = catalog.accelerator(gpu);
      a.calib = c;
      catalog.put(a);
    }
  }
  const auto v = ig::model::validate(catalog, groups);
  const std::string table = ig::model::validation_markdown(v);
  if (!md.empty()) std::ofstream(md) << table;
  std::cout << table;
  fmt::print("MAPE over {} isolated groups: prompt_time {:.2f}%  token_time {:.2f}%{}\n", v.counted,
             100 * v.mape_prompt, 100 * v.mape_token, fit ? " (re-fitted factors)" : " (built-in factors)");
  if (v.power_counted)
    fmt::print("MAPE of average power over {} isolated groups with measured power: {:.2f}%\n",
               v.power_counted, 100 * v.mape_power);
  return 0;
}

// Fits the fiber model to the shipped cloud measurements and prints its error on the pairs fitted
// and on the third held out, beside the single-factor model's (docs/latency.md).
int cmd_geo_calibrate_fiber() {
  const auto pairs = ig::net::shipped_rtt_pairs();
  auto model = ig::net::FiberModel::builtin();
  const auto built = model.params();
  const auto fit = ig::net::fit_fiber(model, pairs);
  const auto print = [&](const char* what, const ig::net::FiberModel& m) {
    const auto tr = ig::net::rtt_error(m, pairs, false), ho = ig::net::rtt_error(m, pairs, true);
    fmt::print("{}: fitted {} pairs: median {:.1f}%, p90 {:.1f}%, mean {:.1f}%; held out {} pairs: median {:.1f}%, "
               "p90 {:.1f}%, mean {:.1f}%\n", what, tr.pairs, 100 * tr.median, 100 * tr.p90, 100 * tr.mean, ho.pairs,
               100 * ho.median, 100 * ho.p90, 100 * ho.mean);
  };
  fmt::print("built-in: terrestrial {:.4f}, submarine {:.4f}, hop {:.4f} ms, direct fixed {:.3f} ms, hub fixed {:.3f} ms\n",
             built.terrestrial_factor, built.submarine_factor, built.hop_ms, built.direct_fixed_ms, built.hub_fixed_ms);
  print("built-in", model);
  model.set_params(fit);
  fmt::print("re-fit:   terrestrial {:.4f}, submarine {:.4f}, hop {:.4f} ms, direct fixed {:.3f} ms, hub fixed {:.3f} ms\n",
             fit.terrestrial_factor, fit.submarine_factor, fit.hop_ms, fit.direct_fixed_ms, fit.hub_fixed_ms);
  print("re-fit", model);
  // The single-factor model (great circle x 1.68 + 8 ms) on the same held-out pairs.
  const auto single = ig::net::RttModel::calibrated();
  std::vector<double> e;
  for (const auto& p : pairs)
    if (p.held_out) e.push_back(std::fabs(single.rtt_ms(p.pa, p.pb) - p.measured_ms) / p.measured_ms);
  std::sort(e.begin(), e.end());
  fmt::print("single factor (x{:.2f} + {:.1f} ms): held out {} pairs: median {:.1f}%, p90 {:.1f}%\n", single.route_factor,
             single.fixed_ms, e.size(), 100 * e[e.size() / 2], 100 * e[e.size() * 9 / 10]);
  return 0;
}

int cmd_catalog(const Common& common) {
  const auto c = common.catalog();
  fmt::print("{:<14} {:>9} {:>8} {:>8} {:>9} {:>7} {:>7} {:>7} {:>7}  {}\n", "accelerator", "TFLOP/s",
             "HBM TB/s", "HBM GB", "link GB/s", "TDP W", "idle W", "pref W", "dec W", "factors from");
  for (const auto& n : c.accelerator_names()) {
    const auto& a = c.accelerator(n);
    fmt::print("{:<14} {:>9.0f} {:>8.2f} {:>8.1f} {:>9.0f} {:>7.0f} {:>7.0f} {:>7.0f} {:>7.0f}  {}\n", n,
               a.dense_flops / 1e12, a.hbm_bandwidth / 1e12, a.hbm_bytes / 1e9,
               a.interconnect_bw / 1e9, a.tdp_w, a.idle_w, a.prefill_w, a.decode_w, a.calibrated_from);
  }
  fmt::print("\n{:<14} {:>10} {:>10} {:>14} {:>14} {:>10}\n", "model", "params B", "active B",
             "GFLOP/token", "KV KiB/token", "weights GB");
  for (const auto& n : c.model_names()) {
    const auto& m = c.llm(n);
    fmt::print("{:<14} {:>10.2f} {:>10.2f} {:>14.2f} {:>14.1f} {:>10.1f}\n", n, m.params() / 1e9,
               m.active_params() / 1e9, (m.linear_flops_per_token() + m.lm_head_flops()) / 1e9,
               m.kv_bytes_per_token() / 1024, m.weight_bytes() / 1e9);
  }
  return 0;
}

struct TeArgs {
  std::string topology, demands, objective = "mlu", solver = "lp", paths = "4", classes, out, fail_link;
  double gravity = 0, capacity = 1000, tolerance = 0.01;
  std::size_t gravity_pairs = 0;
  bool by_hops = false;
};

// Removes a directed link pair "A,B" (node ids) and re-routes demands onto paths that avoid it.
ig::te::Graph without_link(const ig::te::Graph& g, const std::string& spec, std::vector<int>& removed) {
  const auto comma = spec.find(',');
  std::int64_t a = 0, b = 0;
  if (comma == std::string::npos || !ig::core::parse_int(spec.substr(0, comma), a) ||
      !ig::core::parse_int(spec.substr(comma + 1), b))
    ig::core::fail_flag("fail-link", "expected SRC,DST node ids");
  const int ia = g.index_of(a), ib = g.index_of(b);
  if (ia < 0 || ib < 0 || g.link_between(ia, ib) < 0)
    ig::core::fail_flag("fail-link", fmt::format("no link {} -> {}", a, b));
  ig::te::Graph h = g;
  for (int l : {g.link_between(ia, ib), g.link_between(ib, ia)})
    if (l >= 0) {
      h.links[static_cast<std::size_t>(l)].capacity = 0;
      removed.push_back(l);
    }
  return h;
}

int cmd_te(const TeArgs& t) {
  using namespace ig::te;
  if (t.topology.empty()) ig::core::fail_flag("topology", "required");
  if (t.out.empty()) ig::core::fail_flag("out", "required");
  const Graph g = read_topology(t.topology, t.capacity);
  Problem p;
  p.graph = &g;
  if (!t.demands.empty()) p.demands = read_demands(t.demands, g);
  else if (t.gravity > 0) p.demands = gravity_demands(g, t.gravity, t.gravity_pairs);
  else ig::core::fail_flag("demands", "give --demands FILE or --gravity TOTAL");
  if (!t.classes.empty()) {
    ig::core::LineReader in(t.classes);
    std::string line;
    std::vector<std::string> f;
    while (in.next(line)) {
      if (ig::core::trim(line).empty() || line[0] == '#') continue;
      ig::core::split_csv(line, f);
      std::int64_t cls = 0;
      double frac = 0;
      if (f.size() != 2 || !ig::core::parse_int(f[0], cls)) {
        if (in.line_number() == 1) continue;  // header
        ig::core::fail_input(t.classes, in.line_number(), "class", "expected class,guarantee");
      }
      if (!ig::core::parse_double(f[1], frac) || frac < 0 || frac > 1)
        ig::core::fail_input(t.classes, in.line_number(), "guarantee", "expected a fraction in [0, 1]");
      p.class_guarantee.emplace_back(static_cast<int>(cls), frac);
    }
  }
  std::int64_t k = 0;
  if (ig::core::parse_int(t.paths, k)) {
    if (k < 1 || k > 64) ig::core::fail_flag("paths", "k must be in 1..64");
    p.paths = compute_paths(g, p.demands, static_cast<int>(k), t.by_hops);
  } else {
    p.paths = read_paths(t.paths, g, p.demands);
  }
  const Objective o = parse_objective(t.objective);
  if (t.solver != "lp" && t.solver != "fast" && t.solver != "cg") ig::core::fail_flag("solver", "must be lp, fast or cg");
  if (!(t.tolerance > 0 && t.tolerance < 1)) ig::core::fail_flag("tolerance", "must be in (0, 1)");
  p.tolerance = t.tolerance;
  auto solve = [&](const Problem& q, const Allocation* warm) {
    if (t.solver == "lp") return solve_lp(q, o);
    if (t.solver == "cg") return solve_exact_cg(q, o, warm);
    return solve_fast(q, o, warm);
  };
  const Allocation a = solve(p, nullptr);
  nlohmann::ordered_json j;
  j["objective_name"] = objective_name(o);
  j["solver"] = a.method;
  j["objective"] = a.value;
  j["bound"] = a.bound;
  j["solve_ms"] = a.solve_ms;
  j["iterations"] = a.iterations;
  j["nodes"] = g.nodes.size();
  j["links_count"] = g.links.size();
  j["demand_count"] = p.demands.size();
  j["total_demand"] = std::accumulate(p.demands.begin(), p.demands.end(), 0.0,
                                      [](double s, const Demand& d) { return s + d.volume; });
  j["throughput"] = a.total();
  j["mlu"] = a.mlu(g);
  if (!t.fail_link.empty()) {
    std::vector<int> removed;
    const Graph h = without_link(g, t.fail_link, removed);
    Problem q = p;
    q.graph = &h;
    auto crosses_failure = [&](const Path& path) {
      return std::any_of(path.begin(), path.end(), [&](int l) {
        return std::find(removed.begin(), removed.end(), l) != removed.end();
      });
    };
    // Paths through the failed link are dropped; demands keep their other candidates.
    for (auto& paths : q.paths) paths.erase(std::remove_if(paths.begin(), paths.end(), crosses_failure), paths.end());
    // Demands that lost every candidate get fresh ones around the failure.
    for (std::size_t d = 0; d < q.paths.size(); ++d)
      if (q.paths[d].empty()) q.paths[d] = k_shortest_paths(h, q.demands[d].src, q.demands[d].dst, std::max<int>(1, static_cast<int>(k)), t.by_hops);
    Allocation warm = a;
    for (std::size_t d = 0; d < p.paths.size(); ++d) {
      std::vector<double> kept;
      for (std::size_t i = 0; i < p.paths[d].size(); ++i)
        if (!crosses_failure(p.paths[d][i])) kept.push_back(a.flow[d][i]);
      kept.resize(q.paths[d].size(), 0.0);
      warm.flow[d] = kept;
    }
    const Allocation fresh = solve(q, nullptr);
    const Allocation inc = t.solver == "lp" ? fresh : solve(q, &warm);
    j["after_failure"] = {{"link", t.fail_link}, {"objective", inc.value}, {"fresh_solve_ms", fresh.solve_ms},
                          {"incremental_solve_ms", inc.solve_ms}, {"fresh_objective", fresh.value}};
  }
  auto& dj = j["demands"] = nlohmann::json::array();
  for (std::size_t d = 0; d < p.demands.size(); ++d) {
    const auto& dem = p.demands[d];
    nlohmann::ordered_json e;
    e["src"] = g.nodes[static_cast<std::size_t>(dem.src)].id;
    e["dst"] = g.nodes[static_cast<std::size_t>(dem.dst)].id;
    e["volume"] = dem.volume;
    e["class"] = dem.cls;
    e["allocated"] = std::accumulate(a.flow[d].begin(), a.flow[d].end(), 0.0);
    auto& pj = e["paths"] = nlohmann::json::array();
    for (std::size_t i = 0; i < p.paths[d].size(); ++i) {
      std::vector<std::int64_t> nodes{g.nodes[static_cast<std::size_t>(dem.src)].id};
      for (int l : p.paths[d][i]) nodes.push_back(g.nodes[static_cast<std::size_t>(g.links[static_cast<std::size_t>(l)].dst)].id);
      pj.push_back({{"nodes", nodes}, {"flow", a.flow[d][i]}});
    }
    dj.push_back(e);
  }
  auto& lj = j["links"] = nlohmann::json::array();
  for (std::size_t l = 0; l < g.links.size(); ++l) {
    const auto& link = g.links[l];
    lj.push_back({{"src", g.nodes[static_cast<std::size_t>(link.src)].id},
                  {"dst", g.nodes[static_cast<std::size_t>(link.dst)].id},
                  {"capacity", link.capacity},
                  {"load", a.link_load[l]},
                  {"utilization", link.capacity > 0 ? a.link_load[l] / link.capacity : 0.0}});
  }
  std::ofstream(t.out) << j.dump(1) << "\n";
  fmt::print("{} {} on {} nodes, {} links, {} demands: objective {:.6g} (bound {:.6g}) in {:.1f} ms; wrote {}\n",
             a.method, objective_name(o), g.nodes.size(), g.links.size(), p.demands.size(), a.value, a.bound,
             a.solve_ms, t.out);
  if (j.contains("after_failure"))
    fmt::print("after failing {}: objective {:.6g}, incremental {:.1f} ms vs fresh {:.1f} ms\n", t.fail_link,
               j["after_failure"]["objective"].get<double>(), j["after_failure"]["incremental_solve_ms"].get<double>(),
               j["after_failure"]["fresh_solve_ms"].get<double>());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"infergrid: plan and run an AI-first inference cloud"};
  app.require_subcommand(1);
  Common common;

  auto* sim = app.add_subcommand(
      "sim", "simulate the planet (default: the embedded world, 24 h), or one site with --trace / --generate");
  common.add(sim);
  std::map<std::string, std::string> s{{"trace", ig::core::data_dir() + "/traces/AzureLLMInferenceTrace_conv.csv"},
                                       {"trace_format", ""}, {"out", "out"},
                                       {"slo_ttft", "0"}, {"slo_tpot", "0"}};
  ig::sim::SiteConfig site;
  site.replicas = 8;
  ig::workload::GeneratorSpec gen;
  std::uint64_t generate = 0;
  std::string prompt_dist = "lognormal:1000:1", output_dist = "lognormal:250:1", schedule;
  std::string prefix_tokens = "0", policy = "fcfs";
  bool no_csv = false, no_progress = false;
  sim->add_option("--trace", s["trace"], "trace file (default: the embedded Azure conversation trace)");
  sim->add_option("--trace-format", s["trace_format"], "azure | azure-mm | burstgpt | mooncake (default: from the header)");
  sim->add_option("--replicas", site.replicas, "model-server replicas");
  sim->add_option("--router", site.router,
                  "site mode: round-robin | least-outstanding | power-of-two | central-queue; planet mode: nearest "
                  "(default) | round-robin | least-outstanding | power-of-two | skyserve | llm-d | infergrid (expected TTFT) | "
                  "infergrid-green (and batch to the cleanest site with headroom)");
  sim->add_option("--slo-ttft-ms", s["slo_ttft"], "TTFT bound of the SLO (0: none)");
  sim->add_option("--slo-tpot-ms", s["slo_tpot"], "TPOT bound of the SLO (0: none)");
  sim->add_option("--seed", site.seed, "seed of every random stream");
  sim->add_option("--out", s["out"], "output folder");
  sim->add_option("--max-num-seqs", site.engine.max_num_seqs, "vLLM --max-num-seqs");
  sim->add_option("--max-num-batched-tokens", site.engine.max_num_batched_tokens, "vLLM --max-num-batched-tokens");
  sim->add_option("--block-size", site.engine.block_size, "vLLM --block-size (tokens per KV block)");
  sim->add_option("--gpu-memory-utilization", site.engine.gpu_memory_utilization, "vLLM --gpu-memory-utilization");
  sim->add_flag("--enable-prefix-caching", site.engine.enable_prefix_caching, "vLLM --enable-prefix-caching");
  sim->add_option("--prefix-cache-tokens", prefix_tokens, "prefix-cache capacity: N tokens or 'unlimited' (default: the KV cache)");
  sim->add_option("--scheduling-policy", policy, "fcfs | priority");
  sim->add_option("--kv-capacity-tokens", site.engine.kv_capacity_tokens, "override the derived KV capacity per replica");
  sim->add_option("--generate", generate, "generate N requests instead of reading a trace");
  sim->add_option("--rate", gen.rate, "generated arrival rate, requests/s");
  sim->add_option("--cv", gen.cv, "coefficient of variation of inter-arrival times (1: Poisson; else Gamma)");
  sim->add_option("--rate-schedule", schedule, "piecewise rate SECONDS:RATE,... (overrides --rate)");
  sim->add_option("--prompt-dist", prompt_dist, "prompt tokens: fixed:N | uniform:A:B | lognormal:MEAN:CV | exponential:MEAN");
  sim->add_option("--output-dist", output_dist, "output tokens, same forms");
  sim->add_flag("--no-requests-csv", no_csv, "skip DIR/requests.csv");
  sim->add_flag("--no-progress", no_progress, "no progress bar");
  PlanetArgs pa;
  sim->add_option("--world", pa.world, "planet mode: world YAML, or a shipped world by name (planet-full: the default at 1:1); default: the "
                  "embedded data/world/default.yaml (1:100)");
  sim->add_option("--scenario", pa.scenario, "planet mode: events YAML (outages, link cuts, capacity loss, surges, publications)");
  sim->add_option("--hours", pa.cfg.hours, "planet mode: simulated hours");
  sim->add_option("--arrival-trace", pa.arrival_trace,
                  "planet mode: drive the demand's minute-to-minute rhythm with this trace's arrivals");
  sim->add_option("--scale", pa.cfg.scale, "planet mode: multiplies the world's requests per day");
  sim->add_option("--flow-threshold-bytes", pa.cfg.flow_threshold_bytes,
                  "planet mode: smaller transfers are counted on links but not contended");
  sim->add_option("--max-attempts", pa.cfg.max_attempts, "planet mode: sites tried before a request is lost");
  sim->add_option("--bandwidth", pa.cfg.bandwidth,
                  "planet mode: fair (per-flow max-min on lowest-latency routes) | te (tiered max-min on k paths "
                  "from the te module, re-solved every --te-interval-s and on link and demand events)");
  sim->add_option("--te-interval-s", pa.cfg.te_interval_s, "planet mode, --bandwidth te: periodic re-solve");
  sim->add_option("--controller", pa.cfg.controller,
                  "planet mode: the fleet's controller: static (the world's replicas, never changed) | reactive "
                  "(llm-d / KEDA on queue and KV usage) | skyserve (target QPS per replica) | dynamo (Dynamo "
                  "planner's load-based mode); parameters in the world's control: section (docs/control.md)");
  std::vector<std::string> control_kv;
  sim->add_option("--control", control_kv,
                  "planet mode: a parameter of the controller, NAME=VALUE or NAME@MODEL=VALUE (over the world's control: "
                  "section; repeatable)");
  bool planet_csv = false, no_prefix = false;
  sim->add_flag("--no-prefix-caching", no_prefix, "planet mode: engines without prefix caching");
  double kv_host_gb = -1;
  sim->add_option("--kv-host-gb", kv_host_gb,
                  "planet mode: GB of host memory per accelerator for the engines' KV tier (blocks evicted from the GPU's "
                  "prefix cache, loaded back at the world's fleet.kv_host_gb_s); default: the world's fleet.kv_host_gb_per_gpu")
      ->check(CLI::Range(0.0, 1e5));
  double bulk_load = -1;
  sim->add_option("--bulk-load", bulk_load,
                  "planet mode: background bulk copies offered on every DCI link each way, as a share of its capacity "
                  "(0: none); default: the world's bulk.load and links' bulk_load")
      ->check(CLI::Range(0.0, 1.0));
  double kv_ssd_gb = -1;
  sim->add_option("--kv-ssd-gb", kv_ssd_gb,
                  "planet mode: GB of local SSD per accelerator for a KV tier under host memory (what the host tier, or "
                  "without one the GPU's prefix cache, evicts; read at the world's fleet.kv_ssd_gb_s); default: the "
                  "world's fleet.kv_ssd_gb_per_gpu")
      ->check(CLI::Range(0.0, 1e6));
  sim->add_option("--index-replicas-from", pa.cfg.index_replicas_from,
                  "planet mode: deployments of at least this many replica slots keep their ready replicas ordered by "
                  "load for the site balancer instead of scanning them (the same pick; a benchmark knob)")
      ->check(CLI::Range(1, 1 << 30));
  sim->add_flag("--requests-csv", planet_csv, "planet mode: also write DIR/requests.csv, a row per request (large)");
  bool step_by_step = false;
  sim->add_flag("--step-by-step", step_by_step, "one event per decode iteration (the baseline the closed form is measured against)");

  auto* perf = app.add_subcommand("perf", "predict an isolated batch: prompt, token and e2e time");
  common.add(perf);
  int prompt = 512, batch = 1, output = 128, max_model_len = 0;
  double util = 0.9;
  std::string reservation = "paged";
  perf->add_option("--prompt", prompt, "prompt tokens per sequence");
  perf->add_option("--batch", batch, "sequences");
  perf->add_option("--output-tokens", output, "output tokens per sequence");
  perf->add_option("--kv-reservation", reservation, "paged (vLLM) | static (max-model-len per sequence)");
  perf->add_option("--max-model-len", max_model_len, "tokens reserved per sequence when static");
  perf->add_option("--gpu-memory-utilization", util, "fraction of memory for weights + KV");

  auto* cal = app.add_subcommand("calibrate", "hold the model against measurements; --fit re-fits its factors");
  common.add(cal);
  std::string data = ig::core::data_dir() + "/perf/splitwise_measured_llama2-70b.csv", md;
  bool fit = false;
  cal->add_option("--data", data, "measurement CSV (Splitwise format)");
  cal->add_flag("--fit", fit, "re-fit the efficiency factors and print them");
  cal->add_option("--markdown", md, "also write the table to this file");

  auto* te = app.add_subcommand("te", "allocate bandwidth on a WAN: min MLU, max flow, or tiered max-min");
  TeArgs ta;
  te->add_option("--topology", ta.topology, "Topology Zoo .gml or node-link .json");
  te->add_option("--demands", ta.demands, "n x n matrix CSV, or rows src,dst,volume[,class]");
  te->add_option("--gravity", ta.gravity, "instead of --demands: gravity-model demands totalling this volume");
  te->add_option("--gravity-pairs", ta.gravity_pairs, "keep only the N largest gravity pairs (0: all)");
  te->add_option("--objective", ta.objective, "mlu | max-flow | max-min");
  te->add_option("--solver", ta.solver, "lp (exact, CLP) | fast (potential, certified within --tolerance) | cg (exact column generation)");
  te->add_option("--tolerance", ta.tolerance, "fast: stop once within this fraction of the optimum's bound (default 0.01)");
  te->add_option("--paths", ta.paths, "k (k lowest-latency paths) or a file of `src dst n0 ... nk` lines");
  te->add_flag("--by-hops", ta.by_hops, "k shortest by hop count instead of latency");
  te->add_option("--classes", ta.classes, "CSV class,guarantee (fraction of demand served before priority)");
  te->add_option("--capacity", ta.capacity, "capacity of GML links that carry none");
  te->add_option("--fail-link", ta.fail_link, "SRC,DST: also re-allocate after this link fails");
  te->add_option("--out", ta.out, "output JSON");

  auto* sw = app.add_subcommand("sweep", "run a grid of scenarios x controllers x routers x seeds and compare them "
                                          "(under mpirun the runs spread over the ranks)");
  std::string sweep_grid = ig::core::data_dir() + "/scenarios/sweep-small.yaml", sweep_out = "out/sweep";
  sw->add_option("--grid", sweep_grid, "the grid YAML (docs/control.md \"Sweeps\")");
  sw->add_option("--out", sweep_out, "output folder: sweep.csv, sweep_summary.csv, sweep.json, sweep.html");

  auto* fc = app.add_subcommand("forecast", "score the demand forecaster on a sim's demand.csv or a trace, against naive forecasts");
  ig::cli::ForecastArgs fa;
  fc->add_option("--demand", fa.demand, "a demand.csv written by `infergrid sim`");
  fc->add_option("--trace", fa.trace, "or a request trace (Azure, BurstGPT, Mooncake)");
  fc->add_option("--step", fa.step_s, "seconds per step");
  fc->add_option("--horizons", fa.horizons_s, "horizons in seconds")->delimiter(',');
  fc->add_option("--warmup-h", fa.warmup_h, "hours before scoring starts");
  fc->add_option("--json", fa.json, "also write the scores as JSON");
  fc->add_option("--alpha", fa.alpha, "Holt-Winters: level smoothing")->check(CLI::Range(1e-6, 1.0));
  fc->add_option("--beta", fa.beta, "Holt-Winters: trend smoothing")->check(CLI::Range(0.0, 1.0));
  fc->add_option("--gamma", fa.gamma, "Holt-Winters: season smoothing")->check(CLI::Range(0.0, 1.0));
  fc->add_option("--phi", fa.phi, "Holt-Winters: trend damping")->check(CLI::Range(1e-6, 1.0));
  fc->add_option("--season-smooth-s", fa.season_smooth_s, "Holt-Winters: the first day's shape averaged over +- this many seconds");

  auto* geo = app.add_subcommand("geo", "geography: modeled round-trip times");
  geo->require_subcommand(1);
  auto* rtt = geo->add_subcommand("rtt", "print the modeled round trip between two points, in ms");
  std::string from, to;
  rtt->add_option("--from", from, "LAT,LON")->required();
  rtt->add_option("--to", to, "LAT,LON")->required();
  auto* geocal = geo->add_subcommand("calibrate", "fit the RTT model to measured round trips and print its error");
  std::string rtt_data;  // empty: fit the fiber model to the shipped cloud measurements
  geocal->add_option("--data", rtt_data, "a measured RTT matrix CSV (city,lat,lon,<cities>): fit the single-factor model to it instead");

  auto* eng = app.add_subcommand("engine", "serve the OpenAI API from the engine model, without a GPU");
  ig::serve::EngineOptions eo;
  eng->add_option("--model", eo.model, "model (see `infergrid catalog`)");
  eng->add_option("--gpu", eo.gpu, "accelerator");
  eng->add_option("--tp", eo.tp, "tensor-parallel degree");
  eng->add_option("--catalog", eo.catalog_file, "YAML file adding or overriding catalog entries");
  eng->add_option("--host", eo.host, "address to bind");
  eng->add_option("--port", eo.port, "port (0: any free port; printed on stdout)");
  eng->add_option("--served-model-name", eo.served_name, "the model name clients ask for (default: --model)");
  eng->add_option("--max-num-seqs", eo.max_num_seqs, "vLLM --max-num-seqs");
  eng->add_option("--max-num-batched-tokens", eo.max_num_batched_tokens, "vLLM --max-num-batched-tokens");
  eng->add_option("--api-key", eo.api_key, "vLLM --api-key: /v1/* requests need Authorization: Bearer KEY");
  eng->add_option("--ssl-certfile", eo.tls_cert, "vLLM --ssl-certfile: serve HTTPS with this certificate chain (PEM)");
  eng->add_option("--ssl-keyfile", eo.tls_key, "vLLM --ssl-keyfile: the certificate's private key (PEM)");
  eng->add_option("--max-model-len", eo.max_model_len,
                  "vLLM --max-model-len: prompt + output tokens per request (default: the KV cache, at most 131072)");
  eng->add_option("--output-dist", eo.output_dist, "output tokens when max_tokens is absent");
  eng->add_option("--time-scale", eo.time_scale, "wall time per model second (0.1: ten times faster)");
  eng->add_option("--load-s", eo.load_s, "seconds loading weights before serving, as a cold start (scaled by --time-scale)")
      ->check(CLI::Range(0.0, 86400.0));
  eng->add_option("--seed", eo.seed, "seed of the output-length stream");
  eng->add_option("--fail-after-tokens", eo.fail_after_tokens, "fault: drop each stream after N tokens");
  eng->add_flag("--refuse", eo.refuse, "fault: answer every inference request with 503");
  eng->add_option("--add-latency-ms", eo.add_latency_ms, "fault or WAN: delay before each answer");

  auto* gwc = app.add_subcommand("gateway", "route OpenAI API requests across sites and backends");
  std::string gw_config;
  gwc->add_option("--config", gw_config, "gateway YAML (docs/serve.md)")->required();

  auto* demo = app.add_subcommand("demo", "run a small local fabric: emulated sites, a gateway, mixed traffic, a failure");
  ig::serve::DemoOptions dopt;
  demo->add_option("--sites", dopt.sites, "emulated sites (3 to 5)");
  demo->add_option("--requests", dopt.requests, "requests to send");
  demo->add_option("--concurrency", dopt.concurrency, "clients sending at once");
  demo->add_option("--policy", dopt.policy, "routing policy (as in the twin)");

  auto* cat = app.add_subcommand("catalog", "list accelerators and models with derived figures");
  common.add(cat);

  try {
    app.parse(argc, argv);
    bool site_mode = false;
    for (const char* f : {"--trace", "--trace-format", "--generate", "--model", "--gpu", "--tp", "--replicas"})
      site_mode |= sim->count(f) > 0;
    if (*sim && site_mode) {
      for (const char* f : {"--world", "--scenario", "--hours", "--scale", "--flow-threshold-bytes", "--max-attempts",
                            "--arrival-trace", "--bandwidth", "--te-interval-s", "--requests-csv", "--controller", "--control",
                            "--no-prefix-caching", "--kv-host-gb"})
        if (sim->count(f) > 0)
          ig::core::fail_flag(std::string(f).substr(2), "planet mode only; --trace, --generate, --model, --gpu, --tp "
                                                        "and --replicas select the single-site twin");
    }
    if (*sim && !site_mode) {
      // The planet's power is per site, in the world; a process-wide cap would be ignored there.
      if (sim->count("--power-cap") > 0)
        ig::core::fail_flag("power-cap", "single-site mode only (--trace or --generate); the planet's sites carry their "
                                         "own power in the world YAML");
      pa.cfg.seed = site.seed;
      pa.cfg.router = sim->count("--router") ? site.router : "nearest";
      pa.cfg.engine.max_num_seqs = site.engine.max_num_seqs;
      pa.cfg.engine.max_num_batched_tokens = site.engine.max_num_batched_tokens;
      pa.cfg.engine.block_size = site.engine.block_size;
      pa.cfg.engine.gpu_memory_utilization = site.engine.gpu_memory_utilization;
      pa.cfg.engine.priority_scheduling = policy == "priority";
      pa.cfg.prefix_caching = !no_prefix;
      pa.cfg.kv_host_gb_per_gpu = kv_host_gb;
      pa.cfg.kv_ssd_gb_per_gpu = kv_ssd_gb;
      pa.cfg.bulk_load = bulk_load;
      for (const auto& kv : control_kv) {
        const auto eq = kv.find('=');
        double v = 0;
        if (eq == std::string::npos || eq == 0) ig::core::fail_flag("control", fmt::format("expected NAME=VALUE, got '{}'", kv));
        if (!ig::core::parse_double(kv.substr(eq + 1), v) || !std::isfinite(v))
          ig::core::fail_flag("control", fmt::format("'{}': the value must be a finite number", kv));
        pa.cfg.control_params[kv.substr(0, eq)] = v;
      }
      if (planet_csv) {
        std::filesystem::create_directories(s["out"]);
        pa.cfg.requests_csv = s["out"] + "/requests.csv";
      }
      return cmd_planet(common, pa, s["out"], !no_progress);
    }
    if (*sim) {
      site.engine.priority_scheduling = policy == "priority";
      site.engine.fast_forward = !step_by_step;
      if (policy != "fcfs" && policy != "priority") ig::core::fail_flag("scheduling-policy", "must be fcfs or priority");
      if (prefix_tokens == "unlimited") {
        site.engine.prefix_cache_tokens = -1;
      } else {
        std::int64_t v = 0;
        if (!ig::core::parse_int(prefix_tokens, v) || v < 0)
          ig::core::fail_flag("prefix-cache-tokens", "expected a token count or 'unlimited'");
        site.engine.prefix_cache_tokens = v;
      }
      double d = 0;
      if (!ig::core::parse_double(s["slo_ttft"], d) || d < 0) ig::core::fail_flag("slo-ttft-ms", "expected a non-negative number");
      if (!ig::core::parse_double(s["slo_tpot"], d) || d < 0) ig::core::fail_flag("slo-tpot-ms", "expected a non-negative number");
      if (generate > 0) {
        gen.count = generate;
        gen.seed = site.seed;
        gen.prompt = ig::workload::LengthDist::parse(prompt_dist, "prompt-dist");
        gen.output = ig::workload::LengthDist::parse(output_dist, "output-dist");
        if (!schedule.empty()) gen.schedule = ig::workload::GeneratorSpec::parse_schedule(schedule);
        if (!(gen.rate > 0)) ig::core::fail_flag("rate", "must be positive");
        if (!(gen.cv > 0)) ig::core::fail_flag("cv", "must be positive");
      }
      return cmd_sim(common, s, site, gen, generate > 0, !no_csv, !no_progress);
    }
    if (*eng) return ig::serve::run_engine(eo);
    if (*demo) return ig::serve::run_demo(dopt);
    if (*gwc) return ig::serve::run_gateway(ig::serve::load_gateway_config(gw_config));
    if (*perf) return cmd_perf(common, prompt, batch, output, reservation, max_model_len, util);
    if (*cal) return cmd_calibrate(common, data, fit, md);
    if (*cat) return cmd_catalog(common);
    if (*te) return cmd_te(ta);
    if (*fc) return ig::cli::run_forecast(fa);
    if (*sw) return ig::sweep::run_sweep(sweep_grid, sweep_out, common.catalog());
    if (*rtt) {
      ig::core::LatLon a, b;
      if (!ig::core::parse_latlon(from, a)) ig::core::fail_flag("from", "expected LAT,LON in degrees");
      if (!ig::core::parse_latlon(to, b)) ig::core::fail_flag("to", "expected LAT,LON in degrees");
      fmt::print("{:.2f}\n", ig::net::FiberModel::builtin().rtt_ms(a, b));
      return 0;
    }
    if (*geocal && rtt_data.empty()) return cmd_geo_calibrate_fiber();
    if (*geocal) {
      const auto samples = ig::net::read_rtt_matrix(rtt_data);
      const auto fit = ig::net::fit_rtt(samples);
      const auto model = ig::net::RttModel::calibrated();
      std::vector<double> err;
      fmt::print("| from | to | km | measured ms | modeled ms | error |\n|---|---|---|---|---|---|\n");
      for (const auto& x : samples) {
        const double m = model.fixed_ms + 2 * ig::net::RttModel::kFiberMsPerKm * model.route_factor * x.km;
        err.push_back(std::fabs(m - x.measured_ms) / x.measured_ms);
        fmt::print("| {} | {} | {:.0f} | {:.1f} | {:.1f} | {:.0f}% |\n", x.from, x.to, x.km, x.measured_ms, m, 100 * err.back());
      }
      std::sort(err.begin(), err.end());
      const double mean = std::accumulate(err.begin(), err.end(), 0.0) / std::max<std::size_t>(err.size(), 1);
      fmt::print("\nfit on {} pairs: route_factor {:.3f}, fixed {:.2f} ms; built-in model: route_factor {:.3f}, "
                 "fixed {:.2f} ms; its error: median {:.1f}%, mean {:.1f}%, 90th percentile {:.1f}%\n",
                 samples.size(), fit.route_factor, fit.fixed_ms, model.route_factor, model.fixed_ms,
                 100 * err[err.size() / 2], 100 * mean, 100 * err[err.size() * 9 / 10]);
      return 0;
    }
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const ig::core::InputError& e) {
    std::cerr << "infergrid: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {  // the system refused something (a port in use, memory)
    std::cerr << "infergrid: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
