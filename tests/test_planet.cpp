// The planet twin against hand-worked cases: latency plumbing, retrieval round trips, data-sync
// transfers shared max-min, rerouting around a cut, outages that account for every request,
// surges, determinism; the world loader's errors; the site routers.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <filesystem>
#include <fstream>

#include "control/site_router.hpp"
#include "core/error.hpp"
#include "core/geo.hpp"
#include "model/perf_model.hpp"
#include "net/fiber.hpp"
#include "net/latency.hpp"
#include "sim/site_sim.hpp"
#include "workload/generator.hpp"
#include "twin/output.hpp"
#include "twin/planet.hpp"
#include "world/world.hpp"
#include "temp_file.hpp"

namespace ig = infergrid;
using infergrid::testing_util::write_temp;

namespace {

const std::string kDir = std::string(INFERGRID_TEST_DIR) + "/scenarios/planet/";

ig::world::World load(const std::string& name) {
  return ig::world::load_world(kDir + name, ig::model::Catalog::builtin());
}

ig::twin::PlanetResult run(const ig::world::World& w, const std::string& router = "nearest", double hours = 1,
                           double bucket_s = 900) {
  ig::twin::PlanetConfig cfg;
  cfg.router = router;
  cfg.hours = hours;
  cfg.bucket_s = bucket_s;
  ig::twin::PlanetSim sim(w, ig::model::Catalog::builtin(), cfg);
  return sim.run();
}

double user_rtt(const ig::world::World& w, int metro, int site) {
  return w.metros[metro].last_mile_ms + ig::net::FiberModel::builtin().rtt_ms(w.metros[metro].pos, w.sites[site].pos);
}

double link_rtt(const ig::world::World& w, int link) {
  return 2 * (w.links[link].km * 0.005 + w.per_hop_ms);
}

void expect_error(const std::string& yaml, const std::string& needle) {
  const auto path = write_temp("bad.yaml", yaml);
  try {
    ig::world::load_world(path, ig::model::Catalog::builtin());
    FAIL() << "expected an error containing " << needle;
  } catch (const ig::core::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

std::uint64_t total(const ig::twin::PlanetResult& r) { return r.completed + r.rejected + r.lost; }

}  // namespace

TEST(Planet, NearestServesFromTheNearSiteWithTheModeledRoundTrip) {
  const auto w = load("two-sites.yaml");
  const auto r = run(w);
  EXPECT_EQ(r.arrived, total(r));
  EXPECT_GT(r.sites[0].routed, 5000u);
  EXPECT_EQ(r.sites[1].routed, 0u);
  // Chat uploads 3 KB over a 10 Gbit/s access link (2.4 us): network time is the round trip.
  EXPECT_NEAR(r.classes[0].network.mean(), user_rtt(w, 0, 0), 0.01 * user_rtt(w, 0, 0));
}

TEST(Planet, RoundRobinSplitsAndPaysTheFarRoundTrip) {
  const auto w = load("two-sites.yaml");
  const auto r = run(w, "round-robin");
  const double half = static_cast<double>(r.sites[0].routed + r.sites[1].routed) / 2;
  EXPECT_NEAR(static_cast<double>(r.sites[0].routed), half, 1.0);
  const double want = (user_rtt(w, 0, 0) + user_rtt(w, 0, 1)) / 2;
  EXPECT_NEAR(r.classes[0].network.mean(), want, 0.02 * want);
  EXPECT_GT(user_rtt(w, 0, 1), user_rtt(w, 0, 0) + 20);  // far is far
}

// The metro enters the backbone at `near`; what is served at `far` crosses the near-far link:
// every upload byte one way and every response byte (200 B per output token) the other.
TEST(Planet, RemoteServingCrossesTheBackboneFromTheEntrySite) {
  const auto w = load("two-sites.yaml");
  const auto rr = run(w, "round-robin");
  const double up = rr.bytes_by_kind.count("remote_upload") ? rr.bytes_by_kind.at("remote_upload") : 0;
  const double down = rr.bytes_by_kind.count("remote_response") ? rr.bytes_by_kind.at("remote_response") : 0;
  ASSERT_GT(up, 0);
  ASSERT_GT(down, 0);
  // About half the uploads and responses (round-robin), all on the one link, beside the
  // retrievals and sync it carries anyway.
  EXPECT_NEAR(up / rr.bytes_by_kind.at("upload"), 0.5, 0.05);
  EXPECT_NEAR(down / rr.bytes_by_kind.at("response"), 0.5, 0.05);
  const auto near_run = run(w, "nearest");
  EXPECT_EQ(near_run.bytes_by_kind.count("remote_upload"), 0u);
  const double extra = (rr.links[0].bytes_ab + rr.links[0].bytes_ba) - (near_run.links[0].bytes_ab + near_run.links[0].bytes_ba);
  // What round-robin adds on the link is the remote user bytes (retrievals differ a little too:
  // far holds the other shard).
  EXPECT_GT(extra, 0.5 * (up + down));
}

// KV moves by hand: one conversation whose every turn continues it (6,000-token prompts: 23
// shared blocks of 256 = 5,888 tokens), sent round-robin so that each turn runs at the other site.
// The prefix's KV is fetched from the site of the last turn: bytes = KV bytes per token x 5,888
// (Llama-3-8B: 131,072 B); time = bytes / 50 GB/s (the 400G link) + the link's round trip. It
// beats recomputing 5,888 tokens, so every moved turn fetches; the turns' mean network time grows
// by exactly that over the same run without prefix caches (nothing to fetch), and the fetched
// prefix hits in the new site's cache.
TEST(Planet, AContinuingTurnServedElsewhereFetchesItsKvWhenThatBeatsRecomputing) {
  std::string yaml = R"(name: kv-moves
route_factor: 1.68
per_hop_ms: 0.1
sites:
  - {id: near, lat: 48.85, lon: 2.35, accelerators: {h100-80gb: 1}, power_cap_kw: 50,
     deployments: [{model: llama3-8b, accelerator: h100-80gb, tp: 1, replicas: 1}]}
  - {id: far, lat: 60.17, lon: 24.94, accelerators: {h100-80gb: 1}, power_cap_kw: 50,
     deployments: [{model: llama3-8b, accelerator: h100-80gb, tp: 1, replicas: 1}]}
links:
  - {a: near, b: far, gbps: 400}
metros:
  - {name: Paris, country: France, lat: 48.86, lon: 2.35, population: 11000000, utc_offset: 1, last_mile_ms: 5}
workload:
  requests_per_day: 17280   # 0.2 requests/s: transfers do not overlap
  classes:
    - {name: chat, share: 1, priority: interactive, model: llama3-8b, prompt: "fixed:6000",
       output: "fixed:64", session_continue: 1, slo_ttft_ms: 2000}
)";
  const auto w = ig::world::load_world(write_temp("kv-moves.yaml", yaml), ig::model::Catalog::builtin());
  ig::twin::PlanetConfig cfg;
  cfg.router = "round-robin";
  cfg.hours = 1;
  ig::twin::PlanetSim with(w, ig::model::Catalog::builtin(), cfg);
  const auto r = with.run();
  cfg.engine.enable_prefix_caching = false;
  cfg.prefix_caching = false;
  ig::twin::PlanetSim without(w, ig::model::Catalog::builtin(), cfg);
  const auto base = without.run();
  const auto& c = r.classes[0];
  ASSERT_GT(c.completed, 500u);
  EXPECT_EQ(c.completed, base.classes[0].completed);
  EXPECT_GE(r.kv_moves, c.completed - 2);  // every turn after the first
  EXPECT_EQ(r.kv_recomputed, 0u);
  EXPECT_EQ(base.kv_moves, 0u);
  const double bytes = ig::model::Catalog::builtin().llm("llama3-8b").kv_bytes_per_token() * 5888;
  EXPECT_DOUBLE_EQ(bytes, 131072.0 * 5888);
  EXPECT_NEAR(r.bytes_by_kind.at("kv"), bytes * static_cast<double>(r.kv_moves), 1e-6 * bytes * r.kv_moves);
  const double move_ms = link_rtt(w, 0) + bytes / 50e9 * 1000;
  const double added = (c.network.mean() - base.classes[0].network.mean()) * static_cast<double>(c.completed) /
                       static_cast<double>(r.kv_moves);
  EXPECT_NEAR(added, move_ms, 0.01 * move_ms);
  EXPECT_GT(static_cast<double>(c.cached_tokens) / static_cast<double>(c.prompt_tokens), 0.95 * 5888 / 6000);
}

// A deployment with expert parallelism: one replica of DeepSeek-V3 over 16 H200s (EP16,
// attention data-parallel per GPU) holds 16 accelerators and serves; an EP group that the
// attention's TP does not divide is an error naming the field.
TEST(Planet, AnExpertParallelDeploymentHoldsItsGroupAndServes) {
  const std::string head = R"(name: ep
sites:
  - {id: s, lat: 48.85, lon: 2.35, accelerators: {h200: 16}, power_cap_kw: 100,
     deployments: [{model: deepseek-v3, accelerator: h200, tp: TP, ep: 16, replicas: 1}]}
metros:
  - {name: Paris, country: France, lat: 48.86, lon: 2.35, population: 1000000}
workload:
  requests_per_day: 86400
  classes:
    - {name: reasoning, share: 1, priority: interactive, model: deepseek-v3, prompt: "fixed:2000", output: "fixed:200"}
)";
  auto with_tp = [&](const std::string& tp) {
    std::string y = head;
    y.replace(y.find("TP"), 2, tp);
    return y;
  };
  const auto w = ig::world::load_world(write_temp("ep.yaml", with_tp("1")), ig::model::Catalog::builtin());
  ASSERT_EQ(w.sites[0].deployments[0].gpus(), 16);
  const auto r = run(w, "nearest", 0.1);
  EXPECT_GT(r.classes[0].completed, 300u);
  EXPECT_EQ(r.lost + r.rejected, 0u);
  ASSERT_EQ(r.deployments.size(), 1u);
  EXPECT_EQ(r.deployments[0].ep, 16);
  // 16 GPUs held for the run and its drain.
  EXPECT_NEAR(r.deployments[0].gpu_hours / (16 * ig::core::to_seconds(r.end) / 3600), 1.0, 1e-6);
  expect_error(with_tp("3"), "ep");
}

TEST(Planet, RetrievalStepsCostComputePlusHalfTheTimeARemoteRoundTrip) {
  const auto w = load("two-sites.yaml");
  const auto r = run(w);
  // Served at `near`; each of the 2 steps reads docs-0 (local: 20 ms) or docs-1 (remote: 20 ms
  // + the link's round trip + 4 MB at 400 Gbit/s = 0.08 ms), with equal odds.
  const double step = 20 + 0.5 * (link_rtt(w, 0) + 0.08);
  EXPECT_NEAR(r.classes[1].retrieval.mean(), 2 * step, 0.05 * 2 * step);
  EXPECT_EQ(r.retrieval_failures, 0u);
  EXPECT_GT(r.inter_site_bytes, 0.0);
}

TEST(Planet, SyncTransferTakesSizeOverCapacity) {
  const auto w = load("two-sites.yaml");
  const auto r = run(w);
  ASSERT_EQ(r.staleness.size(), 2u);
  EXPECT_EQ(r.staleness[0].ready_s, r.staleness[0].published_s);  // the repository's own site
  // 50 GB over 400 Gbit/s (50 GB/s): one second; retrievals outrank it but are microseconds.
  EXPECT_NEAR(r.staleness[1].ready_s - r.staleness[1].published_s, 1.0, 0.01);
  EXPECT_NEAR(r.staleness[1].published_s, 600, 1e-9);
}

// A 1:100 model: the link is written at 4 Gbit/s, the artifact crosses as 750 MB of its 75 GB
// (world.hpp), 1.5 s as at the real 400G. Each 1-second sample is the bytes carried over that
// second: 100% over 600-601 s, 50% over 601-602 s (a sample of the load at each second's end
// would read 100% and then 0%).
TEST(Planet, ScaledWorldMovesArtifactsInRealTimeAndLinksCountTheirSecondsExactly) {
  std::ifstream in(kDir + "two-sites.yaml");
  std::string yaml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto swap = [&](const std::string& from, const std::string& to) {
    const auto at = yaml.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    yaml.replace(at, from.size(), to);
  };
  swap("per_hop_ms: 0.1\n", "per_hop_ms: 0.1\nscale: 100\n");
  swap("gbps: 400", "gbps: 4");
  swap("size_gb: 50", "size_gb: 75");
  const auto w = ig::world::load_world(write_temp("scaled.yaml", yaml), ig::model::Catalog::builtin());
  EXPECT_NEAR(w.metros[0].uplink_gbps, 10, 1e-12);  // written: kept
  const auto r = run(w, "nearest", 0.2, 2);
  ASSERT_EQ(r.staleness.size(), 2u);
  EXPECT_NEAR(r.staleness[1].ready_s - r.staleness[1].published_s, 1.5, 0.01);
  // The bucket from 600 s to 602 s: the samples at 601 s and 602 s.
  const auto& b = *std::find_if(r.buckets.begin(), r.buckets.end(), [](const auto& x) { return x.t_s > 599; });
  ASSERT_NEAR(b.t_s, 600, 1e-9);
  EXPECT_NEAR(b.link_1s[0][0], 0.50, 0.011);  // the median of {1.0, 0.5}, at 1% resolution
  EXPECT_NEAR(b.link_1s[0][2], 1.00, 0.011);
}

TEST(Planet, CutLinkReroutesAndTransfersShareTheBottleneckMaxMin) {
  const auto w = load("link-cut.yaml");
  const auto r = run(w);
  EXPECT_EQ(r.arrived, total(r));
  EXPECT_EQ(r.retrieval_failures, 0u);  // the long way round stays up
  // Published at 00:30 during the a-b cut: b -> c and b -> c -> a share link b-c (50 GB/s):
  // 25 GB/s each, 10 GB each: both ready after 0.4 s (without the cut, each 0.2 s).
  ASSERT_EQ(r.staleness.size(), 3u);
  for (const auto& s : r.staleness) {
    if (s.site == "b") continue;
    EXPECT_NEAR(s.ready_s - s.published_s, 0.4, 0.004) << s.site;
  }
  // Retrievals during the cut cross two links instead of one: the mean step grows.
  const auto direct = run(w, "nearest", 0.3);  // before the cut only
  EXPECT_GT(r.classes[0].retrieval.mean(), direct.classes[0].retrieval.mean() + 1.0);
}

TEST(Planet, TeSplitsATransferOverBothPathsOfADiamond) {
  const auto w = load("diamond.yaml");
  ig::twin::PlanetConfig cfg;
  cfg.hours = 0.5;
  const auto fair = ig::twin::PlanetSim(w, ig::model::Catalog::builtin(), cfg).run();
  cfg.bandwidth = "te";
  const auto te = ig::twin::PlanetSim(w, ig::model::Catalog::builtin(), cfg).run();
  auto staleness = [](const ig::twin::PlanetResult& r) {
    for (const auto& s : r.staleness)
      if (s.site == "b") return s.ready_s - s.published_s;
    return -1.0;
  };
  // 100 GB: on the direct 400G link alone, 2 s; split by te over the direct link and the
  // detour (each 50 GB/s), 1 s.
  EXPECT_NEAR(staleness(fair), 2.0, 0.01);
  EXPECT_NEAR(staleness(te), 1.0, 0.01);
  EXPECT_GT(te.te_solves, 1u);
  EXPECT_EQ(fair.te_solves, 0u);
  EXPECT_EQ(te.arrived, te.completed + te.rejected + te.lost);
  // Under a cut of the direct link, te still finishes the transfer over the detour.
  auto cut = w;
  ig::world::Event e;
  e.kind = ig::world::Event::Kind::kLinkCut;
  e.at = ig::core::from_seconds(500);
  e.duration = ig::core::from_seconds(3600);
  e.link = cut.link_index(0, 1);
  e.factor = 0;
  cut.events.push_back(e);
  const auto rc = ig::twin::PlanetSim(cut, ig::model::Catalog::builtin(), cfg).run();
  EXPECT_NEAR(staleness(rc), 2.0, 0.01);
}

TEST(Planet, AroundOneSiteTheEngineBehavesAsTheOneSiteTwin) {
  const auto w = load("one-site.yaml");
  const auto r = run(w, "nearest", 0.5);
  // The one-site twin on a Poisson stream of the same rate and lengths, same engine and router.
  ig::workload::GeneratorSpec g;
  g.rate = 20;
  g.count = 36000;
  g.prompt = ig::workload::LengthDist::parse("fixed:1024", "p");
  g.output = ig::workload::LengthDist::parse("fixed:128", "o");
  auto src = ig::workload::make_generator(g);
  const auto catalog = ig::model::Catalog::builtin();
  auto pm = std::make_shared<ig::model::PerfModel>(catalog.llm("llama3-8b"), catalog.accelerator("h100-80gb"), 1);
  ig::sim::SiteConfig sc;
  sc.replicas = 2;
  sc.router = "least-outstanding";
  ig::sim::Metrics m(ig::sim::Slo{});
  ig::sim::SiteSim site(pm, static_cast<std::int64_t>(pm->kv_capacity_tokens(0.9)), sc);
  site.run(*src, m);
  const auto& c = r.classes[0];
  ASSERT_GT(c.completed, 30000u);
  // Compute (first scheduled to last token) and queueing agree within sampling noise.
  const double site_compute = m.e2e().mean() - m.queue().mean();
  EXPECT_NEAR(c.compute.mean(), site_compute, 0.02 * site_compute);
  EXPECT_NEAR(c.queue.mean(), m.queue().mean(), 0.1 * m.queue().mean() + 0.5);
  // The user sees the round trip at distance 0 on top (last mile 0): the fiber model's fixed part.
  const double rtt = user_rtt(w, 0, 0);
  EXPECT_NEAR(c.ttft.mean() - m.ttft().mean(), rtt, 0.05 * m.ttft().mean() + 0.5);
}

TEST(Planet, ConversationsHitPrefixCachesWhereLlmDSendsThem) {
  // The default world with four times its replicas a site: with one or two pods a site, a
  // conversation lands on its pod by chance under any balancer; with many, only a router that
  // scores the prefix finds it.
  auto w = ig::world::load_world(ig::world::default_world_path(), ig::model::Catalog::builtin());
  for (auto& s : w.sites) {
    for (auto& d : s.deployments) d.replicas *= 4;
    for (auto& [g, n] : s.accelerators) n *= 4;
  }
  ig::twin::PlanetConfig cfg;
  cfg.hours = 0.5;
  cfg.scale = 0.1;
  auto cached = [&](const std::string& router, bool caching) {
    cfg.router = router;
    cfg.prefix_caching = caching;
    const auto r = ig::twin::PlanetSim(w, ig::model::Catalog::builtin(), cfg).run();
    const auto& chat = r.classes[0];
    return static_cast<double>(chat.cached_tokens) / static_cast<double>(chat.prompt_tokens);
  };
  // llm-d routes a conversation back to the pod holding its prefix; a least-outstanding
  // balancer inside the site lands there by chance; without caching nothing hits.
  const double llmd = cached("llm-d", true), nearest = cached("nearest", true);
  EXPECT_GT(llmd, 2 * nearest);
  EXPECT_GT(llmd, 0.05);
  EXPECT_EQ(cached("llm-d", false), 0.0);
}

TEST(Planet, RegionalOutageAccountsForEveryRequest) {
  const auto w = load("outage.yaml");
  const auto r = run(w);
  EXPECT_EQ(r.arrived, r.completed + r.rejected + r.lost);
  std::uint64_t lost = 0;
  for (const auto& [reason, n] : r.lost_by_reason) lost += n;
  EXPECT_EQ(lost, r.lost);
  EXPECT_GT(r.sites[0].evacuated, 0u);  // requests in flight at fra went elsewhere
  EXPECT_GT(r.sites[1].routed, 0u);     // ams took the traffic while fra was down
  EXPECT_GT(r.classes[0].retried, 0u);
  // Without the outage, nearest sends everything to fra.
  auto calm = w;
  calm.events.clear();
  const auto c = run(calm);
  EXPECT_EQ(c.sites[1].routed, 0u);
  EXPECT_EQ(c.sites[0].evacuated, 0u);
}

TEST(Planet, RetriesExhaustedAreLostWithAReason) {
  auto w = load("outage.yaml");
  for (int s = 1; s < 3; ++s) {  // every site fails at once
    ig::world::Event e = w.events[0];
    e.site = s;
    w.events.push_back(e);
  }
  const auto r = run(w);
  EXPECT_EQ(r.arrived, r.completed + r.rejected + r.lost);
  EXPECT_GT(r.lost, 0u);
  EXPECT_GT(r.lost_by_reason.count("no site up serves llama3-70b") + r.lost_by_reason.count("site outage"), 0u);
}

TEST(Planet, SurgeMultipliesTheMetrosDemand) {
  const auto w = load("surge.yaml");
  const auto r = run(w, "nearest", 1, 600);
  ASSERT_GE(r.buckets.size(), 6u);
  double before = 0, during = 0;
  for (int b = 0; b < 3; ++b) before += static_cast<double>(r.buckets[b].arrivals[0]);
  for (int b = 3; b < 6; ++b) during += static_cast<double>(r.buckets[b].arrivals[0]);
  // Two metros of equal population; one triples: (3 + 1) / 2 = 2x.
  EXPECT_NEAR(during / before, 2.0, 0.1);
}

TEST(Planet, TheEventWindowCountsWhatArrivedUnderTheScenarioEvents) {
  auto w = load("surge.yaml");  // Seattle x3 from 00:30 for 30 minutes
  ig::twin::PlanetConfig cfg;
  cfg.hours = 1.5;
  cfg.bucket_s = 600;
  cfg.window_recovery_s = 600;
  {  // A world's own events set no window.
    ig::twin::PlanetSim sim(w, ig::model::Catalog::builtin(), cfg);
    const auto r = sim.run();
    EXPECT_LE(r.window_end_s, r.window_start_s);
    const auto j = nlohmann::json::parse(ig::twin::planet_summary_json(w, cfg, r));
    EXPECT_TRUE(j["event_window"].is_null());
  }
  w.events[0].from_scenario = true;  // as load_scenario marks them
  ig::twin::PlanetSim sim(w, ig::model::Catalog::builtin(), cfg);
  const auto r = sim.run();
  EXPECT_DOUBLE_EQ(r.window_start_s, 1800);
  EXPECT_DOUBLE_EQ(r.window_end_s, 1800 + 1800 + 600);  // the event's end plus the recovery
  // The arrivals counted in the window are those of the 10-minute buckets 3 to 6.
  ASSERT_GE(r.buckets.size(), 7u);
  std::uint64_t in_buckets = 0, arrived = 0, met = 0, window_met = 0;
  for (int b = 3; b < 7; ++b)
    for (auto a : r.buckets[static_cast<std::size_t>(b)].arrivals) in_buckets += a;
  for (const auto& c : r.classes) arrived += c.window_arrived, window_met += c.window_met_slo, met += c.met_slo;
  EXPECT_EQ(arrived, in_buckets);
  EXPECT_GT(window_met, 0u);
  EXPECT_LE(window_met, arrived);
  EXPECT_LT(window_met, met);
  const auto j = nlohmann::json::parse(ig::twin::planet_summary_json(w, cfg, r));
  EXPECT_DOUBLE_EQ(j["event_window"]["goodput_rps"].get<double>(), static_cast<double>(window_met) / 2400);
  EXPECT_DOUBLE_EQ(j["event_window"]["end_h"].get<double>(), 4200.0 / 3600);
}

TEST(World, EveryShippedScenarioLoadsOntoTheDefaultWorld) {
  const auto base = ig::world::load_world(ig::world::default_world_path(), ig::model::Catalog::builtin());
  const auto dir = std::filesystem::path(ig::world::default_world_path()).parent_path().parent_path() / "scenarios";
  int n = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    const auto name = f.path().filename().string();
    if (f.path().extension() != ".yaml" || name.rfind("sweep-", 0) == 0) continue;
    auto w = base;
    ig::world::load_scenario(f.path().string(), w);
    bool split = false;  // a scenario that disaggregates deployments needs no events
    for (const auto& s : w.sites)
      for (const auto& d : s.deployments) split |= d.decode_site >= 0;
    ASSERT_TRUE(split || w.events.size() > base.events.size()) << name;
    for (std::size_t i = base.events.size(); i < w.events.size(); ++i) EXPECT_TRUE(w.events[i].from_scenario) << name;
    ++n;
  }
  EXPECT_GE(n, 7);  // the default day's seven scenarios (docs/control.md)
}

TEST(Planet, ReplayedTraceSetsTheMinuteRhythm) {
  // Minute 0: 10 arrivals, minute 1: 30, minute 2: 1 (partial, dropped): rhythm 0.5, 1.5.
  std::string trace = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
  for (int i = 0; i < 10; ++i) trace += fmt::format("2023-11-16 18:15:{:02d}.000000,100,10\n", i);
  for (int i = 0; i < 30; ++i) trace += fmt::format("2023-11-16 18:16:{:02d}.000000,100,10\n", i);
  trace += "2023-11-16 18:17:00.000000,100,10\n";
  const auto rhythm = ig::world::trace_rhythm(write_temp("rhythm.csv", trace));
  ASSERT_EQ(rhythm.size(), 2u);
  EXPECT_DOUBLE_EQ(rhythm[0], 0.5);
  EXPECT_DOUBLE_EQ(rhythm[1], 1.5);
  auto w = load("surge.yaml");
  w.events.clear();
  w.workload.rhythm = rhythm;
  const auto r = run(w, "nearest", 1, 60);
  double even = 0, odd = 0;
  for (std::size_t b = 0; b < 60 && b < r.buckets.size(); ++b)
    (b % 2 ? odd : even) += static_cast<double>(r.buckets[b].arrivals[0]);
  EXPECT_NEAR(odd / even, 3.0, 0.15);
  EXPECT_NEAR(even + odd, 7200, 4 * std::sqrt(7200.0));  // the day's volume is kept
}

TEST(Planet, SameSeedSameSummaryByteForByte) {
  const auto w = load("outage.yaml");
  ig::twin::PlanetConfig cfg;
  cfg.hours = 0.5;
  cfg.router = "power-of-two";
  const auto a = ig::twin::PlanetSim(w, ig::model::Catalog::builtin(), cfg).run();
  const auto b = ig::twin::PlanetSim(w, ig::model::Catalog::builtin(), cfg).run();
  EXPECT_EQ(ig::twin::planet_summary_json(w, cfg, a), ig::twin::planet_summary_json(w, cfg, b));
  cfg.seed = 2;
  const auto c = ig::twin::PlanetSim(w, ig::model::Catalog::builtin(), cfg).run();
  EXPECT_NE(ig::twin::planet_summary_json(w, cfg, a), ig::twin::planet_summary_json(w, cfg, c));
}

TEST(Planet, EmbeddedDefaultWorldIsWholeAndConsistent) {
  const auto w = ig::world::load_world(ig::world::default_world_path(), ig::model::Catalog::builtin());
  int core = 0, regional = 0, edge = 0;
  for (const auto& s : w.sites) {
    core += s.tier == ig::world::Tier::kCore;
    regional += s.tier == ig::world::Tier::kRegional;
    edge += s.tier == ig::world::Tier::kEdge;
  }
  EXPECT_GE(core + regional, 25);
  EXPECT_LE(core + regional, 40);
  EXPECT_GE(edge, 20);
  EXPECT_GE(w.metros.size(), 700u);
  std::set<double> speeds;
  for (const auto& l : w.links) speeds.insert(l.gbps * w.scale);  // written at the model's 1:100
  EXPECT_EQ(w.scale, 100);
  EXPECT_EQ(speeds, (std::set<double>{400, 800, 1600}));
  // Every continent: a site south of the equator in South America, Africa and Oceania.
  auto any = [&](auto pred) { return std::any_of(w.sites.begin(), w.sites.end(), pred); };
  EXPECT_TRUE(any([](const auto& s) { return s.pos.lat < 0 && s.pos.lon < -30; }));
  EXPECT_TRUE(any([](const auto& s) { return s.pos.lat < 0 && s.pos.lon > 10 && s.pos.lon < 40; }));
  EXPECT_TRUE(any([](const auto& s) { return s.pos.lat < -20 && s.pos.lon > 110; }));
}

// Demand by market: a listed country's share over its metros by population, the rest of the
// shares over the unlisted countries' metros, none for an excluded country; hand-worked.
TEST(World, MarketsSetDemandByCountryShare) {
  const std::string head =
      "name: t\nsites:\n  - {id: a, lat: 1, lon: 2, power_cap_kw: 10, accelerators: {h100-80gb: 8},\n"
      "     deployments: [{model: llama3-8b, accelerator: h100-80gb, tp: 1, replicas: 1}]}\n"
      "metros:\n  - {name: u1, country: U, lat: 1, lon: 2, population: 3000000}\n"
      "  - {name: u2, country: U, lat: 1, lon: 3, population: 1000000}\n"
      "  - {name: v, country: V, lat: 2, lon: 2, population: 8000000}\n"
      "  - {name: x, country: X, lat: 3, lon: 2, population: 2000000}\n"
      "  - {name: c, country: C, lat: 4, lon: 2, population: 50000000}\n"
      "workload:\n  requests_per_day: 100\n  classes:\n    - {name: k, share: 1, model: llama3-8b}\n";
  const auto w = ig::world::load_world(
      write_temp("markets.yaml", head + "markets: {shares: {U: 0.4, V: 0.2}, exclude: [C]}\n"),
      ig::model::Catalog::builtin());
  EXPECT_NEAR(w.metros[0].demand_weight, 0.4 * 0.75, 1e-12);
  EXPECT_NEAR(w.metros[1].demand_weight, 0.4 * 0.25, 1e-12);
  EXPECT_NEAR(w.metros[2].demand_weight, 0.2, 1e-12);
  EXPECT_NEAR(w.metros[3].demand_weight, 0.4, 1e-12);  // what the shares leave, to X alone
  EXPECT_EQ(w.metros[4].demand_weight, 0);            // excluded
  // Without markets, demand follows population.
  const auto p = ig::world::load_world(write_temp("pop.yaml", head), ig::model::Catalog::builtin());
  EXPECT_EQ(p.metros[4].demand_weight, 50000000);
  expect_error(head + "markets: {shares: {U: 0.8, V: 0.4}}\n", "field 'markets.shares': shares sum to 1.2000, more than 1");
  expect_error(head + "markets: {shares: {U: lots}}\n", "field 'markets.shares.U': expected a fraction in [0, 1]");
  expect_error(head + "markets: {exclude: [U, V, X, C]}\n", "field 'markets': no metro is left with demand");
}

TEST(World, ErrorsNameFileLineAndField) {
  const std::string head =
      "name: t\nsites:\n  - {id: a, lat: 1, lon: 2, power_cap_kw: 10, accelerators: {h100-80gb: 8},\n"
      "     deployments: [{model: llama3-8b, accelerator: h100-80gb, tp: 1, replicas: 1}]}\n";
  const std::string tail =
      "metros:\n  - {name: m, lat: 1, lon: 2, population: 1000000}\nworkload:\n  requests_per_day: 100\n"
      "  classes:\n    - {name: c, share: 1, model: llama3-8b}\n";
  expect_error(head + "links:\n  - {a: a, b: nowhere, gbps: 400}\n" + tail, ":6: field 'b': unknown site 'nowhere'");
  expect_error(
      "name: t\nsites:\n  - {id: a, lat: 1, lon: 2, power_cap_kw: 10, accelerators: {h100-80gb: 8},\n"
      "     deployments: [{model: deepseek-v3, accelerator: h100-80gb, tp: 8, replicas: 1}]}\n" + tail,
      "field 'model': deepseek-v3 does not fit on 8 x h100-80gb");
  expect_error(head + tail + "events:\n  - {kind: outage, at: 1h, site: b}\n", ":12: field 'site': unknown site 'b'");
  expect_error(head + tail + "bogus: 1\n", "field 'bogus': unknown key");
  expect_error(head + tail.substr(0, tail.size() - 1) + "\n    - {name: d, share: 0.5, model: llama3-8b}\n",
               "field 'share': class shares sum to 1.5");
  expect_error(head + "metros:\n  - {name: m, lat: 95, lon: 2, population: 1}\n", ":6: field 'lat': must be in [-90, 90]");
  expect_error(head + tail + "events:\n  - {kind: outage, at: soon, site: a}\n", "field 'at': bad duration 'soon'");
  expect_error("sites: [\n", "");
  // tp x replicas overflowed an int (UB) before the accelerator count was checked (fuzz_world seed replicas-overflow.yaml).
  expect_error(
      "name: t\nsites:\n  - {id: a, lat: 1, lon: 2, power_cap_kw: 10, accelerators: {h100-80gb: 2000000000},\n"
      "     deployments: [{model: llama3-8b, accelerator: h100-80gb, tp: 100000000, replicas: 100000000}]}\n" + tail,
      ":4: field 'replicas': site 'a' deploys 10000000000000000 x h100-80gb but holds 2000000000");
  // A time of day past what a duration holds is refused, not rounded to nonsense.
  expect_error(head + tail + "events:\n  - {kind: outage, at: \"1e300:00\", site: a}\n", "field 'at': bad time '1e300:00'");
}

TEST(SiteRouter, BaselinesDecideAsTheSystemsTheyStandFor) {
  using ig::control::SiteView;
  std::vector<SiteView> v(3);
  v[0] = {0, 10, 40, 30, 4, 0.9, 0};  // near, busy
  v[1] = {1, 80, 4, 0, 4, 0.1, 0};    // far, idle
  v[2] = {2, 50, 20, 10, 2, 0.5, 1};  // middle, holds the prefix
  const ig::control::GeoRequest r{1, 100, 1, 7};
  EXPECT_EQ(*ig::control::make_site_router("nearest", 1)->pick(r, v), 0u);
  EXPECT_EQ(*ig::control::make_site_router("skyserve", 1)->pick(r, v), 1u);           // 1 per replica
  EXPECT_EQ(*ig::control::make_site_router("least-outstanding", 1)->pick(r, v), 1u);  // 4 in all
  // llm-d: queue 2 x (0, 1, 1/3) + (1 - kv) 2 x (0.1, 0.9, 0.5) + prefix 3 x (0, 0, 1).
  const auto llmd = ig::control::make_site_router("llm-d", 1);
  EXPECT_EQ(*llmd->pick(r, v), 2u);
  const auto sc = llmd->scores(v);
  // Waiting per replica 7.5, 0, 5: queue scores 0, 1, 1/3.
  EXPECT_NEAR(sc[0], 2 * 0 + 2 * 0.1 + 3 * 0, 1e-12);
  EXPECT_NEAR(sc[1], 2 * 1 + 2 * 0.9 + 3 * 0, 1e-12);
  EXPECT_NEAR(sc[2], 2 * (1.0 / 3) + 2 * 0.5 + 3 * 1, 1e-12);
  auto rr = ig::control::make_site_router("round-robin", 1);
  EXPECT_EQ(*rr->pick(r, v), 0u);
  EXPECT_EQ(*rr->pick(r, v), 1u);
  EXPECT_EQ(*rr->pick(r, v), 2u);
  auto p2a = ig::control::make_site_router("power-of-two", 5), p2b = ig::control::make_site_router("power-of-two", 5);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(*p2a->pick(r, v), *p2b->pick(r, v));
  EXPECT_THROW(ig::control::make_site_router("magic", 1), ig::core::InputError);
}

// infergrid's one cost, worked by hand: expected TTFT = RTT + wait + prefill of the uncached prompt.
TEST(SiteRouter, InferGridPicksTheLowestExpectedTtft) {
  using ig::control::SiteView;
  std::vector<SiteView> v(2);
  // Near: 10 ms away, 2 replicas of 8 slots each at 4 req/s, 20 outstanding of which 3 waiting:
  // max(3, 20 + 1 - 16) = 5 ahead / (2 x 4 req/s) = 625 ms; prefill 2,000 tokens at 10k tok/s = 200 ms.
  v[0] = {0, 10, 20, 3, 2, 0.5, 0, 4, 8, 10000};
  // Far: 150 ms away, idle: 0 ahead; its prefix cache holds half the prompt: 100 ms of prefill.
  v[1] = {1, 150, 2, 0, 2, 0.1, 0.5, 4, 8, 10000};
  auto r = ig::control::make_site_router("infergrid", 1);
  const ig::control::GeoRequest big{1, 2000, 1, 7};
  EXPECT_EQ(*r->pick(big, v), 1u);  // 10 + 625 + 200 = 835 ms against 150 + 0 + 100 = 250 ms
  // Without the queue the distance wins: 10 + 0 + 200 against 250.
  v[0].outstanding = 4;
  v[0].waiting = 0;
  EXPECT_EQ(*r->pick(big, v), 0u);
  const auto sc = r->scores(v);  // for a 1,000-token prompt
  EXPECT_NEAR(sc[0], 10 + 1000 * (0 + 1000.0 / 10000), 1e-9);
  EXPECT_NEAR(sc[1], 150 + 1000 * (0 + 500.0 / 10000), 1e-9);
  // No engine model (the gateway): a second of work per waiting request per replica.
  v[0] = {0, 10, 20, 4, 2, 0.5, 0};
  v[1] = {1, 150, 2, 0, 2, 0.1, 0};
  EXPECT_NEAR(r->scores(v)[0], 10 + 1000 * 2.0, 1e-9);
  EXPECT_EQ(*r->pick(big, v), 1u);
}
