// Background bulk copies (world `bulk:`): the bytes they carry and the utilization they give a
// link, worked by hand; strict priority (no flow is slower for them); a cut link's backlog and its
// drain; the loader's errors; planet-full, the default world at 1:1.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "core/error.hpp"
#include "model/catalog.hpp"
#include "twin/planet.hpp"
#include "world/world.hpp"
#include "temp_file.hpp"

namespace ig = infergrid;
using infergrid::testing_util::write_temp;

namespace {

// Paris and Frankfurt on one 8 Gbit/s link (1 GB/s each way); one request a second, each with a
// 20 MB image, half of them served across the link (round robin).
std::string world_yaml(const std::string& bulk, const std::string& extra = "") {
  return R"(name: bulk
route_factor: 1.68
per_hop_ms: 0.1
)" + bulk + R"(
sites:
  - {id: paris, lat: 48.85, lon: 2.35, accelerators: {h100-80gb: 1}, power_cap_kw: 50,
     deployments: [{model: llama3-8b, accelerator: h100-80gb, tp: 1, replicas: 1}]}
  - {id: frankfurt, lat: 50.11, lon: 8.68, accelerators: {h100-80gb: 1}, power_cap_kw: 50,
     deployments: [{model: llama3-8b, accelerator: h100-80gb, tp: 1, replicas: 1}]}
links:
  - {a: paris, b: frankfurt, gbps: 8}
metros:
  - {name: Paris, country: France, lat: 48.86, lon: 2.35, population: 11000000, utc_offset: 1, last_mile_ms: 5}
  - {name: Frankfurt, country: Germany, lat: 50.11, lon: 8.68, population: 2000000, utc_offset: 1, last_mile_ms: 5}
workload:
  requests_per_day: 86400
  classes:
    - {name: chat, share: 1, priority: interactive, model: llama3-8b, prompt: "fixed:1000",
       output: "fixed:64", slo_ttft_ms: 2000, images: "fixed:1", tokens_per_image: 1, mb_per_image: 20}
)" + extra;
}

ig::world::World load(const std::string& name, const std::string& yaml) {
  return ig::world::load_world(write_temp(name, yaml), ig::model::Catalog::builtin());
}

ig::twin::PlanetResult run(const ig::world::World& w, double hours = 1, double bulk_load = -1) {
  ig::twin::PlanetConfig cfg;
  cfg.router = "round-robin";  // half the requests are served at the other site: their bytes cross the link
  cfg.hours = hours;
  cfg.bulk_load = bulk_load;
  ig::twin::PlanetSim sim(w, ig::model::Catalog::builtin(), cfg);
  return sim.run();
}

}  // namespace

// Offered = load x capacity x time each way: 0.5 x 1 GB/s x 3,600 s = 1.8 TB, in copies of
// 100 GB / scale 100 = 1 GB (1,800 of them, exponential: the sum's spread is sqrt(2 / 1,800) =
// 3.3%). The link carries all of it (its flows use little), so its mean utilization is 0.5 and,
// whenever a copy is waiting, the copy takes the whole second: the 1-second p99 is 1.
TEST(Bulk, CopiesOfferHalfTheLinkAndFillTheSecondsTheyWaitIn) {
  const auto w = load("bulk.yaml", world_yaml("scale: 100\nbulk: {load: 0.5, copy_gb: 100}"));
  ASSERT_DOUBLE_EQ(w.bulk.load, 0.5);
  const auto r = run(w);
  const double each_way = 0.5 * 1e9 * 3600;
  EXPECT_NEAR(r.bulk_offered / (2 * each_way), 1.0, 0.10);
  EXPECT_GT(r.bulk_carried, 0.98 * r.bulk_offered - 20e9);  // what is left waits at the end: a few copies
  EXPECT_NEAR(r.bulk_carried + r.bulk_backlog, r.bulk_offered, 1e-6 * r.bulk_offered);
  EXPECT_NEAR(r.links[0].bulk_ab + r.links[0].bulk_ba, r.bulk_carried, 1e-6 * r.bulk_carried);
  EXPECT_GE(r.links[0].bytes_ab, r.links[0].bulk_ab);
  EXPECT_NEAR(r.bytes_by_kind.at("bulk"), r.bulk_carried, 1);
  ASSERT_FALSE(r.buckets.empty());
  for (const auto& b : r.buckets) {
    EXPECT_NEAR(b.link_util[0], 0.5, 0.12);
    EXPECT_NEAR(b.link_1s[0][2], 1.0, 0.011);
  }
  // The copies are bytes between sites.
  EXPECT_GT(r.inter_site_bytes, r.bulk_carried);
}

// Strict priority: the copies take only what the flows leave, so every request is served exactly
// as without them; only the link's bytes differ.
TEST(Bulk, NoRequestIsSlowerForTheCopies) {
  const auto w = load("bulk-prio.yaml", world_yaml("scale: 100\nbulk: {load: 0.9, copy_gb: 100}"));
  const auto with = run(w);
  const auto without = run(w, 1, 0.0);
  EXPECT_EQ(without.bulk_offered, 0);
  ASSERT_GT(with.bulk_carried, 0);
  ASSERT_EQ(with.classes.size(), without.classes.size());
  ASSERT_GT(with.classes[0].completed, 1000u);
  EXPECT_EQ(with.classes[0].completed, without.classes[0].completed);
  EXPECT_EQ(with.classes[0].met_slo, without.classes[0].met_slo);
  EXPECT_DOUBLE_EQ(with.classes[0].ttft.quantile(0.99), without.classes[0].ttft.quantile(0.99));
  EXPECT_DOUBLE_EQ(with.classes[0].e2e.quantile(0.5), without.classes[0].e2e.quantile(0.5));
  EXPECT_NEAR(with.inter_site_bytes - with.bulk_carried, without.inter_site_bytes, 1e-9 * with.inter_site_bytes);
  ASSERT_GT(without.inter_site_bytes, 0);  // flows did cross the link the copies filled
}

// A cut of 10 minutes at load 0.5: the copies that arrive meanwhile wait, 0.5 x 600 s = 300 s of
// the link's capacity; once it is back they drain at what the load leaves, 0.5 of it, in about
// 600 s more. The peak backlog reads about 300 s, and by the end of the hour it is gone.
TEST(Bulk, ACutLinksCopiesWaitAndDrainOnceItIsBack) {
  const auto w = load("bulk-cut.yaml", world_yaml("scale: 100\nbulk: {load: 0.5, copy_gb: 100}", R"(events:
  - {kind: link_cut, at: "00:10", duration: 10m, a: paris, b: frankfurt}
)"));
  const auto r = run(w);
  EXPECT_NEAR(r.links[0].bulk_peak_backlog_s, 300, 60);
  EXPECT_LT(r.bulk_backlog, 0.02 * r.bulk_offered);
  const auto uncut = run(load("bulk-uncut.yaml", world_yaml("scale: 100\nbulk: {load: 0.5, copy_gb: 100}")));
  EXPECT_LT(uncut.links[0].bulk_peak_backlog_s, 60);
}

TEST(Bulk, TheLoaderNamesTheFieldItRejects) {
  const auto expect_error = [](const std::string& name, const std::string& yaml, const std::string& field) {
    try {
      load(name, yaml);
      ADD_FAILURE() << "no error for " << name;
    } catch (const ig::core::InputError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(name), std::string::npos) << msg;
      EXPECT_NE(msg.find(field), std::string::npos) << msg;
    }
  };
  expect_error("bulk-load.yaml", world_yaml("bulk: {load: 1.5}"), "load");
  expect_error("bulk-size.yaml", world_yaml("bulk: {load: 0.5, copy_gb: 0}"), "copy_gb");
  expect_error("bulk-key.yaml", world_yaml("bulk: {load: 0.5, copies: 3}"), "copies");
  std::string per_link = world_yaml("bulk: {load: 0.5}");
  per_link.replace(per_link.find("gbps: 8}"), 8, "gbps: 8, bulk_load: -0.1}");
  expect_error("bulk-link.yaml", per_link, "bulk_load");
  // A link's own load replaces the world's.
  std::string own = world_yaml("bulk: {load: 0.5}");
  own.replace(own.find("gbps: 8}"), 8, "gbps: 8, bulk_load: 0}");
  const auto w = load("bulk-own.yaml", own);
  EXPECT_EQ(run(w).bulk_offered, 0);
}

// planet-full (scripts/build_world.py --full) is the default world with every count the 1:100
// model writes at the real platform's: requests, accelerators, replicas, power budgets, link and
// uplink Gbit/s x 100, at scale 1; what is not a count (places, PUE, carbon, classes) is the same.
TEST(PlanetFull, IsTheDefaultWorldWithEveryCountAtOneToOne) {
  const auto& cat = ig::model::Catalog::builtin();
  const auto model = ig::world::load_world(ig::world::default_world_path(), cat);
  const auto full = ig::world::load_world(
      (std::filesystem::path(ig::world::default_world_path()).parent_path() / "planet-full.yaml").string(), cat);
  ASSERT_DOUBLE_EQ(model.scale, 100);
  EXPECT_DOUBLE_EQ(full.scale, 1);
  const double k = model.scale;
  EXPECT_DOUBLE_EQ(full.workload.requests_per_day, k * model.workload.requests_per_day);
  ASSERT_EQ(full.sites.size(), model.sites.size());
  for (std::size_t s = 0; s < model.sites.size(); ++s) {
    const auto &a = model.sites[s], &b = full.sites[s];
    EXPECT_EQ(a.id, b.id);
    EXPECT_DOUBLE_EQ(b.power_cap_kw, k * a.power_cap_kw) << a.id;
    EXPECT_DOUBLE_EQ(b.pue, a.pue);
    EXPECT_DOUBLE_EQ(b.carbon_g_per_kwh, a.carbon_g_per_kwh);
    for (const auto& [g, n] : a.accelerators) EXPECT_EQ(b.accelerators.at(g), k * n) << a.id << " " << g;
    ASSERT_EQ(b.deployments.size(), a.deployments.size());
    for (std::size_t d = 0; d < a.deployments.size(); ++d) EXPECT_EQ(b.deployments[d].replicas, k * a.deployments[d].replicas);
  }
  ASSERT_EQ(full.links.size(), model.links.size());
  for (std::size_t l = 0; l < model.links.size(); ++l) {
    EXPECT_DOUBLE_EQ(full.links[l].gbps, k * model.links[l].gbps);
    EXPECT_DOUBLE_EQ(full.links[l].km, model.links[l].km);
    // Transceivers are per real link: the model's watts are the full world's over the scale.
    EXPECT_NEAR(full.links[l].transceiver_w, k * model.links[l].transceiver_w, 1e-9);
  }
  ASSERT_EQ(full.metros.size(), model.metros.size());
  for (std::size_t m = 0; m < model.metros.size(); ++m) {
    EXPECT_DOUBLE_EQ(full.metros[m].uplink_gbps, k * model.metros[m].uplink_gbps);
    EXPECT_DOUBLE_EQ(full.metros[m].demand_weight, model.metros[m].demand_weight);
  }
  EXPECT_DOUBLE_EQ(full.bulk.load, model.bulk.load);
  EXPECT_DOUBLE_EQ(full.bulk.copy_gb, model.bulk.copy_gb);
  EXPECT_EQ(full.events.size(), model.events.size());
}
