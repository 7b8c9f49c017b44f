// libFuzzer target for the parsers of outside input; FUZZ_FORMAT picks which. Each input is
// written to a file and read through the same path the CLI uses: the only acceptable outcomes
// are requests or an InputError naming the file, line and field.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "control/forecast_eval.hpp"
#include "core/error.hpp"
#include "model/catalog.hpp"
#include "te/graph.hpp"
#include "workload/trace.hpp"
#include "sweep/sweep.hpp"
#include "world/world.hpp"
#include "serve/gateway.hpp"
#include "serve/openai.hpp"

namespace ig = infergrid;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Under $TMPDIR when set (scripts/run_fuzz.sh points it into its own temporary folder).
  static const std::string path = [] {
    const char* tmp = std::getenv("TMPDIR");
    return std::string(tmp && *tmp ? tmp : "/tmp") + "/infergrid_fuzz_" + std::to_string(getpid()) + "_" FUZZ_FORMAT;
  }();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  const std::string fmt = FUZZ_FORMAT;
  if (fmt == "openai") {  // request bodies: an answer or an error, never a crash
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    for (auto ep : {ig::serve::Endpoint::kChat, ig::serve::Endpoint::kCompletions}) {
      ig::serve::ApiRequest r;
      const auto err = ig::serve::parse_request(body, ep, r);
      if (err ? (err->status < 400 || err->message.empty()) : (r.model.empty() || r.prompt_tokens < 1)) __builtin_trap();
    }
    return 0;
  }
  if (fmt == "schedule") {  // an engine's POST /admin/schedule body: settings in range, or an error
    ig::serve::EngineSchedule s;
    const ig::serve::EngineSchedule before = s;
    const auto err = ig::serve::parse_schedule(std::string_view(reinterpret_cast<const char*>(data), size), s);
    if (err && (err->status != 400 || err->message.empty() || s.step_target_s != before.step_target_s ||
                s.prefill_reserve != before.prefill_reserve || s.priority != before.priority))
      __builtin_trap();
    if (!err && !(s.step_target_s >= 0 && s.step_target_s <= 10 && s.prefill_reserve >= 0 && s.prefill_reserve <= 0.95))
      __builtin_trap();
    return 0;
  }
  try {
    if (fmt == "gml" || fmt == "nodelink") {
      const std::string text(reinterpret_cast<const char*>(data), size);
      const auto g = fmt == "gml" ? ig::te::parse_gml(text, path) : ig::te::parse_node_link_json(text, path);
      for (const auto& l : g.links)
        if (l.src < 0 || l.dst < 0 || static_cast<std::size_t>(l.src) >= g.nodes.size() ||
            static_cast<std::size_t>(l.dst) >= g.nodes.size() || !(l.latency_ms >= 0))
          __builtin_trap();
    } else if (fmt == "world" || fmt == "scenario") {
      static const auto catalog = ig::model::Catalog::builtin();
      static const auto base = ig::world::load_world(FUZZ_SEED_WORLD, catalog);
      // A prefill deployment's decode site is another site that deploys its model.
      const auto check_splits = [](const ig::world::World& w) {
        for (std::size_t s = 0; s < w.sites.size(); ++s)
          for (const auto& d : w.sites[s].deployments) {
            if (d.decode_site < 0) continue;
            if (static_cast<std::size_t>(d.decode_site) >= w.sites.size() || static_cast<std::size_t>(d.decode_site) == s)
              __builtin_trap();
            bool serves = false;
            for (const auto& o : w.sites[static_cast<std::size_t>(d.decode_site)].deployments) serves |= o.model == d.model;
            if (!serves) __builtin_trap();
          }
      };
      if (fmt == "world") {
        const auto w = ig::world::load_world(path, catalog);
        for (const auto& l : w.links)
          if (l.a < 0 || l.b < 0 || static_cast<std::size_t>(l.a) >= w.sites.size() ||
              static_cast<std::size_t>(l.b) >= w.sites.size() || l.bulk_load > 1)
            __builtin_trap();
        if (!(w.bulk.load >= 0 && w.bulk.load <= 1 && w.bulk.copy_gb > 0)) __builtin_trap();
        check_splits(w);
      } else {
        auto w = base;
        ig::world::load_scenario(path, w);
        for (const auto& e : w.events)
          if (e.site >= static_cast<int>(w.sites.size()) || e.link >= static_cast<int>(w.links.size())) __builtin_trap();
        check_splits(w);
      }
    } else if (fmt == "demand") {
      for (const auto& s : ig::control::read_demand_csv(path))
        for (double v : s.values)
          if (!(v >= 0) || s.name.empty()) __builtin_trap();
    } else if (fmt == "sweep") {
      const auto g = ig::sweep::load_grid(path);
      if (g.scenarios.empty() || ig::sweep::expand(g).empty()) __builtin_trap();
    } else if (fmt == "gateway") {
      const auto c = ig::serve::load_gateway_config(path);
      if (c.sites.empty()) __builtin_trap();
    } else if (fmt == "catalog") {
      auto c = ig::model::Catalog::builtin();
      c.load_yaml(path);
      for (const auto& n : c.model_names()) (void)c.llm(n).params();
    } else {
      auto src = ig::workload::open_trace(path, ig::workload::parse_trace_format(fmt));
      ig::workload::Request r;
      std::int64_t last = 0;
      while (src->next(r)) {
        if (r.arrival < last || r.prompt_tokens < 1 || r.output_tokens < 1) __builtin_trap();
        last = r.arrival;
      }
    }
  } catch (const ig::core::InputError& e) {
    if (std::string(e.what()).find(path) == std::string::npos) __builtin_trap();
  }
  return 0;
}
