// Prefill at one site, decode at another (world `decode_at`): the KV crosses the DCI, worked by
// hand; a decode site that fails hands the decode back to the prefill site; the loader's errors;
// the host-memory and SSD KV tiers.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "model/catalog.hpp"
#include "model/perf_model.hpp"
#include "net/fiber.hpp"
#include "twin/planet.hpp"
#include "world/world.hpp"
#include "temp_file.hpp"

namespace ig = infergrid;
using infergrid::testing_util::write_temp;

namespace {

// Paris prefills; Frankfurt decodes. One class, 6,000-token prompts and 64 output tokens on
// Llama-3-8B (131,072 B of KV per token), 0.2 requests/s: one transfer at a time on the 400G link.
std::string world_yaml(const std::string& decode_at, const std::string& events = "") {
  return R"(name: pd
route_factor: 1.68
per_hop_ms: 0.1
sites:
  - {id: paris, lat: 48.85, lon: 2.35, accelerators: {h100-80gb: 1}, power_cap_kw: 50,
     deployments: [{model: llama3-8b, accelerator: h100-80gb, tp: 1, replicas: 1)" +
         (decode_at.empty() ? "" : ", decode_at: " + decode_at) + R"(}]}
  - {id: frankfurt, lat: 50.11, lon: 8.68, accelerators: {h100-80gb: 1}, power_cap_kw: 50,
     deployments: [{model: llama3-8b, accelerator: h100-80gb, tp: 1, replicas: 1}]}
links:
  - {a: paris, b: frankfurt, gbps: 400}
metros:
  - {name: Paris, country: France, lat: 48.86, lon: 2.35, population: 11000000, utc_offset: 1, last_mile_ms: 5}
workload:
  requests_per_day: 17280
  classes:
    - {name: chat, share: 1, priority: interactive, model: llama3-8b, prompt: "fixed:6000",
       output: "fixed:64", slo_ttft_ms: 2000}
)" + events;
}

ig::twin::PlanetResult run(const ig::world::World& w) {
  ig::twin::PlanetConfig cfg;
  cfg.router = "nearest";
  cfg.hours = 1;
  ig::twin::PlanetSim sim(w, ig::model::Catalog::builtin(), cfg);
  return sim.run();
}

ig::world::World load(const std::string& name, const std::string& yaml) {
  return ig::world::load_world(write_temp(name, yaml), ig::model::Catalog::builtin());
}

}  // namespace

// Bytes = 131,072 B/token x 6,000 tokens = 786 MB per request; time = bytes / 50 GB/s (the 400G
// link) + the link's round trip (the decode site pulls it). By hand, for a request alone: TTFT =
// the user's round trip to Paris + the prefill of 6,000 tokens; E2E = one way to Paris + the
// prefill + the move + 63 decode steps in Frankfurt + one way back from Frankfurt. The request's
// network time grows by exactly the move; against serving both phases in Paris, the first token
// comes no later, and nothing waits behind another request's prefill.
TEST(Disaggregated, PrefillHereDecodeThereMovesTheKvOverTheLink) {
  const auto w = load("pd.yaml", world_yaml("frankfurt"));
  const auto base_w = load("pd-base.yaml", world_yaml(""));
  ASSERT_EQ(w.sites[0].deployments[0].decode_site, 1);
  const auto r = run(w);
  const auto base = run(base_w);
  const auto& c = r.classes[0];
  const auto& b = base.classes[0];
  ASSERT_GT(c.completed, 600u);
  EXPECT_EQ(c.completed, b.completed);
  EXPECT_EQ(r.arrived, r.completed + r.rejected + r.lost);
  EXPECT_EQ(r.pd_handoffs, c.completed);
  EXPECT_EQ(r.pd_local, 0u);
  EXPECT_EQ(r.sites[1].pd_decoded, c.completed);
  EXPECT_EQ(base.pd_handoffs, 0u);
  const auto& cat = ig::model::Catalog::builtin();
  const double bytes = cat.llm("llama3-8b").kv_bytes_per_token() * 6000;
  EXPECT_DOUBLE_EQ(bytes, 131072.0 * 6000);
  EXPECT_NEAR(r.bytes_by_kind.at("pd_kv"), bytes * static_cast<double>(r.pd_handoffs), 1e-6 * bytes * r.pd_handoffs);
  EXPECT_NEAR(r.links[0].bytes_ab, bytes * static_cast<double>(r.pd_handoffs), 0.001 * bytes * r.pd_handoffs);
  const double link_rtt_ms = 2 * (w.links[0].km * 0.005 + w.per_hop_ms);
  const double move_ms = link_rtt_ms + bytes / 50e9 * 1000;
  EXPECT_NEAR(c.network.mean() - b.network.mean(), move_ms, 0.01 * move_ms);

  const auto& fiber = ig::net::FiberModel::builtin();
  const double rtt_paris = w.metros[0].last_mile_ms + fiber.rtt_ms(w.metros[0].pos, w.sites[0].pos);
  const double rtt_frankfurt = w.metros[0].last_mile_ms + fiber.rtt_ms(w.metros[0].pos, w.sites[1].pos);
  const ig::model::PerfModel pm(cat.llm("llama3-8b"), cat.accelerator("h100-80gb"), 1);
  const auto alone = ig::model::predict_isolated_batch(pm, 6000, 1, 64);
  const double ttft = rtt_paris + alone.prompt_time_ms;
  EXPECT_NEAR(c.ttft.mean(), ttft, 0.02 * ttft);
  const double e2e = rtt_paris / 2 + alone.e2e_time_ms + move_ms + rtt_frankfurt / 2;
  EXPECT_NEAR(c.e2e.mean(), e2e, 0.02 * e2e);
  EXPECT_LE(c.ttft.mean(), b.ttft.mean());
  // In Paris alone, a decode now and then waits out the next request's 6,000-token prefill.
  EXPECT_GT(b.e2e.mean() - (rtt_paris + alone.e2e_time_ms), 0.05 * alone.prompt_time_ms);
  EXPECT_EQ(c.output_tokens, b.output_tokens);
}

// Frankfurt is down from 00:20 for 20 minutes: what Paris prefills then decodes in Paris (its KV
// is there); every request is accounted for.
TEST(Disaggregated, ADecodeSiteDownHandsTheDecodeBackToThePrefillSite) {
  const auto w = load("pd-outage.yaml", world_yaml("frankfurt", R"(events:
  - {kind: outage, at: "00:20", duration: 20m, site: frankfurt}
)"));
  const auto r = run(w);
  EXPECT_EQ(r.arrived, r.completed + r.rejected + r.lost);
  EXPECT_GT(r.pd_local, 150u);     // about 20 minutes at 0.2/s
  EXPECT_GT(r.pd_handoffs, 300u);  // the other 40
  EXPECT_EQ(r.pd_local + r.pd_handoffs, r.classes[0].completed + r.classes[0].retried);
}

TEST(Disaggregated, DecodeAtIsCheckedWithFileLineAndField) {
  const auto expect = [](const std::string& yaml, const std::string& needle) {
    const auto path = write_temp("pd-bad.yaml", yaml);
    try {
      ig::world::load_world(path, ig::model::Catalog::builtin());
      FAIL() << "expected " << needle;
    } catch (const ig::core::InputError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(needle), std::string::npos) << what;
      EXPECT_NE(what.find(path + ":6"), std::string::npos) << what;
      EXPECT_NE(what.find("decode_at"), std::string::npos) << what;
    }
  };
  expect(world_yaml("berlin"), "unknown site 'berlin'");
  expect(world_yaml("paris"), "names its own site");
  auto other_model = world_yaml("frankfurt");
  other_model.replace(other_model.rfind("model: llama3-8b, accelerator"), 16, "model: llama2-7b ");
  expect(other_model, "no deployment of llama3-8b");
}

// A scenario disaggregates deployments of the world it runs on; its mistakes name its own file.
TEST(Disaggregated, AScenarioSplitsAWorldsDeploymentAndNamesItsOwnErrors) {
  auto w = load("pd-scn-base.yaml", world_yaml(""));
  const auto good = write_temp("pd-scn.yaml", R"(name: split
disaggregate:
  - {site: paris, model: llama3-8b, decode_at: frankfurt}
)");
  ig::world::load_scenario(good, w);
  EXPECT_EQ(w.sites[0].deployments[0].decode_site, 1);
  EXPECT_TRUE(w.events.empty());
  const auto expect = [&](const std::string& entry, const std::string& field, const std::string& needle) {
    auto fresh = load("pd-scn-base.yaml", world_yaml(""));
    const auto path = write_temp("pd-scn-bad.yaml", "name: bad\ndisaggregate:\n  - " + entry + "\n");
    try {
      ig::world::load_scenario(path, fresh);
      FAIL() << "expected " << needle;
    } catch (const ig::core::InputError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(path + ":3"), std::string::npos) << what;
      EXPECT_NE(what.find(field), std::string::npos) << what;
      EXPECT_NE(what.find(needle), std::string::npos) << what;
    }
  };
  expect("{site: lyon, model: llama3-8b, decode_at: frankfurt}", "site", "unknown site 'lyon'");
  expect("{site: paris, model: llama3-70b, decode_at: frankfurt}", "model", "deploys no llama3-70b");
  expect("{site: paris, model: llama3-8b, decode_at: nowhere}", "decode_at", "unknown site 'nowhere'");
  expect("{site: paris, model: llama3-8b}", "decode_at", "missing");
}

// The host-memory KV tier by hand: one replica (Paris) whose GPU prefix cache holds one 6,000-token prompt
// (24 blocks of 256), 16 conversations per metro continued at random (half the turns): a continuing
// turn finds its 23 shared blocks (5,888 tokens) evicted to host memory, and loads them at 64 GB/s:
// 5,888 x 131,072 B = 772 MB in 12 ms, against 176 ms to recompute them. Without the tier,
// those turns recompute.
namespace {
// The two-site world above, without disaggregation (nearest sends every request to Paris), half
// its turns continuing a conversation; an hour's run with a GPU prefix cache of one 6,000-token
// prompt (24 blocks of 256).
ig::world::World conversation_world(const std::string& name) {
  std::string yaml = world_yaml("");
  const std::string out = R"(output: "fixed:64",)";
  yaml.replace(yaml.find(out), out.size(), out + " session_continue: 0.5,");
  return load(name, yaml);
}
ig::twin::PlanetConfig tier_config() {
  ig::twin::PlanetConfig cfg;
  cfg.hours = 1;
  cfg.engine.prefix_cache_tokens = 24 * 256;
  return cfg;
}
}  // namespace

TEST(KvHostTier, AContinuingTurnLoadsItsEvictedPrefixFromHostMemory) {
  const auto w = conversation_world("host-tier.yaml");
  auto cfg = tier_config();
  cfg.kv_host_gb_per_gpu = 256;
  ig::twin::PlanetSim with(w, ig::model::Catalog::builtin(), cfg);
  const auto r = with.run();
  cfg.kv_host_gb_per_gpu = 0;
  ig::twin::PlanetSim without(w, ig::model::Catalog::builtin(), cfg);
  const auto base = without.run();
  const auto& c = r.classes[0];
  const auto& b = base.classes[0];
  ASSERT_GT(c.completed, 600u);
  EXPECT_EQ(c.completed, b.completed);
  EXPECT_EQ(base.kv_host_loads, 0u);
  EXPECT_GT(r.kv_host_loads, c.completed * 4 / 10);  // about half the turns continue, nearly all of another conversation
  EXPECT_LT(r.kv_host_loads, c.completed * 6 / 10);
  // Whole 256-token blocks of 32 MiB; at most the 23 shared, fewer when the GPU kept the first.
  const double block = 256.0 * 131072;
  EXPECT_DOUBLE_EQ(r.kv_host_bytes / block, std::round(r.kv_host_bytes / block));
  EXPECT_LE(r.kv_host_bytes, static_cast<double>(r.kv_host_loads) * 23 * block);
  EXPECT_GT(r.kv_host_bytes, 0.98 * static_cast<double>(r.kv_host_loads) * 23 * block);
  const double with_frac = static_cast<double>(c.cached_tokens) / static_cast<double>(c.prompt_tokens);
  const double without_frac = static_cast<double>(b.cached_tokens) / static_cast<double>(b.prompt_tokens);
  EXPECT_NEAR(with_frac, static_cast<double>(r.kv_host_loads + (c.completed / 32)) * 5888 / 6000 / c.completed, 0.05);
  EXPECT_LT(without_frac, 0.1);
  // A loaded turn waits 12 ms for its copy instead of computing 5,888 tokens.
  const double load_ms = 5888.0 * 131072 / 64e9 * 1000;
  EXPECT_NEAR(load_ms, 12.06, 0.01);
  EXPECT_LT(c.ttft.mean(), b.ttft.mean() - 0.3 * static_cast<double>(r.kv_host_loads) / c.completed * 300);
}

// The SSD tier by hand, on the world of the host-tier test: no host memory, 256 GB of SSD per
// accelerator; a continuing turn's 23 shared blocks (772 MB) read at 7.9 GB/s in 98 ms, still under
// the 176 ms of recomputing them, so nearly every continuing turn loads them from the SSD. With
// host memory for one conversation above it, the latest-evicted conversation loads from memory,
// the rest from the SSD.
TEST(KvSsdTier, AContinuingTurnReadsItsEvictedPrefixFromTheSsd) {
  const auto w = conversation_world("ssd-tier.yaml");
  auto cfg = tier_config();
  cfg.kv_host_gb_per_gpu = 0;
  cfg.kv_ssd_gb_per_gpu = 256;
  const auto r = ig::twin::PlanetSim(w, ig::model::Catalog::builtin(), cfg).run();
  cfg.kv_ssd_gb_per_gpu = 0;
  const auto base = ig::twin::PlanetSim(w, ig::model::Catalog::builtin(), cfg).run();
  const auto& c = r.classes[0];
  ASSERT_GT(c.completed, 600u);
  EXPECT_EQ(c.completed, base.classes[0].completed);
  EXPECT_EQ(base.kv_host_loads, 0u);
  EXPECT_GT(r.kv_ssd_loads, c.completed * 4 / 10);
  EXPECT_LT(r.kv_ssd_loads, c.completed * 6 / 10);
  EXPECT_EQ(r.kv_ssd_loads, r.kv_host_loads);  // every load came from the SSD
  EXPECT_DOUBLE_EQ(r.kv_ssd_bytes, r.kv_host_bytes);
  const double block = 256.0 * 131072;
  EXPECT_LE(r.kv_ssd_bytes, static_cast<double>(r.kv_ssd_loads) * 23 * block);
  EXPECT_GT(r.kv_ssd_bytes, 0.98 * static_cast<double>(r.kv_ssd_loads) * 23 * block);
  const double read_ms = 5888.0 * 131072 / 7.9e9 * 1000;
  EXPECT_NEAR(read_ms, 97.7, 0.1);
  // A loaded turn saves 176 - 98 ms of prefill, about half the turns load.
  EXPECT_LT(c.ttft.mean(), base.classes[0].ttft.mean() - 0.3 * 0.078 * static_cast<double>(r.kv_ssd_loads) / c.completed);
  // Host memory for one conversation (24 blocks of 32 MiB, 0.81 GB) above the SSD: some loads
  // come from it, the rest still from the SSD.
  cfg.kv_host_gb_per_gpu = 0.81;
  cfg.kv_ssd_gb_per_gpu = 256;
  const auto both = ig::twin::PlanetSim(w, ig::model::Catalog::builtin(), cfg).run();
  EXPECT_GT(both.kv_host_loads, both.kv_ssd_loads);
  EXPECT_GT(both.kv_ssd_loads, both.kv_host_loads / 2);
}
