// The two control hosts agree: the gateway (observing scraped backends) and the twin (observing
// its replicas) give a controller the same view of the same fleet, so every baseline decides
// the same; and both hosts pick the same site and the same replica from the same loads.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <fstream>

#include "control/balancer.hpp"
#include "control/fleet.hpp"
#include "control/site_router.hpp"
#include "serve/gateway_state.hpp"
#include "twin/planet.hpp"
#include "world/world.hpp"
#include "temp_file.hpp"

namespace ig = infergrid;
using infergrid::testing_util::write_temp;

namespace {

class Capture final : public ig::control::Controller {
 public:
  const char* name() const override { return "capture"; }
  double period_s() const override { return 10; }
  void decide(const ig::control::FleetView& v, ig::control::Decisions&) override {
    if (views.empty()) views.push_back(v);
  }
  std::vector<ig::control::FleetView> views;
};

}  // namespace

TEST(Parity, GatewayAndTwinShowTheSameFleetAndGetTheSameDecisions) {
  // Two sites with two replicas (backends) of llama3-8b each, all idle.
  const auto gw_yaml = write_temp("gw.yaml", R"(listen: 127.0.0.1:0
policy: nearest
access_log: /dev/null
sites:
  - name: near
    location: [48.85, 2.35]
    backends:
      - {url: "http://127.0.0.1:9", models: [llama3-8b], max_concurrency: 256}
      - {url: "http://127.0.0.1:9", models: [llama3-8b], max_concurrency: 256}
  - name: far
    location: [52.52, 13.40]
    backends:
      - {url: "http://127.0.0.1:9", models: [llama3-8b], max_concurrency: 256}
      - {url: "http://127.0.0.1:9", models: [llama3-8b], max_concurrency: 256}
)");
  boost::asio::io_context ioc;
  auto gw = std::make_shared<ig::serve::Gateway>(ioc, ig::serve::load_gateway_config(gw_yaml), nullptr);
  const auto from_gateway = gw->control().observe();

  const auto world_yaml = write_temp("world.yaml", R"(name: parity
sites:
  - {id: near, lat: 48.85, lon: 2.35, accelerators: {h100-80gb: 2}, power_cap_kw: 100,
     deployments: [{model: llama3-8b, accelerator: h100-80gb, tp: 1, replicas: 2}]}
  - {id: far, lat: 52.52, lon: 13.40, accelerators: {h100-80gb: 2}, power_cap_kw: 100,
     deployments: [{model: llama3-8b, accelerator: h100-80gb, tp: 1, replicas: 2}]}
links:
  - {a: near, b: far, gbps: 400}
metros:
  - {name: Paris, country: France, lat: 48.86, lon: 2.35, population: 1000000}
workload:
  requests_per_day: 1
  classes:
    - {name: chat, share: 1, priority: interactive, model: llama3-8b, prompt: "fixed:100", output: "fixed:10"}
)");
  const auto w = ig::world::load_world(world_yaml, ig::model::Catalog::builtin());
  auto cap = std::make_shared<Capture>();
  ig::twin::PlanetConfig cfg;
  cfg.hours = 0.01;
  cfg.controller_impl = cap;
  ig::twin::PlanetSim(w, ig::model::Catalog::builtin(), cfg).run();
  ASSERT_EQ(cap->views.size(), 1u);
  const auto& from_twin = cap->views[0];

  ASSERT_EQ(from_gateway.deployments.size(), from_twin.deployments.size());
  for (std::size_t k = 0; k < from_twin.deployments.size(); ++k) {
    const auto& g = from_gateway.deployments[k];
    const auto& t = from_twin.deployments[k];
    EXPECT_EQ(from_gateway.sites[static_cast<std::size_t>(g.site)].name, from_twin.sites[static_cast<std::size_t>(t.site)].name);
    EXPECT_EQ(g.model, t.model);
    EXPECT_EQ(g.ready, t.ready);
    EXPECT_EQ(g.waiting, t.waiting);
    EXPECT_EQ(g.running, t.running);
    EXPECT_DOUBLE_EQ(g.kv_usage, t.kv_usage);
  }
  // The fields a gateway cannot see (pools, power) differ; a controller deciding from what both
  // show decides the same. Pools: the gateway's fleet is what it has, so align the bound.
  auto tv = from_twin;
  auto gv = from_gateway;
  // Nor does the gateway have an engine model to estimate a replica's sustained rate.
  for (auto& d : tv.deployments) d.arrivals_per_s = 0, d.max_replicas = d.ready, d.capacity_rps = 0;
  for (auto& d : gv.deployments) d.arrivals_per_s = 0;
  gv.t_s = tv.t_s;
  for (const auto& name : ig::control::controller_names()) {
    auto a = ig::control::make_controller(name, {}, 1);
    auto b = ig::control::make_controller(name, {}, 1);
    ig::control::Decisions da, db;
    a->decide(tv, da);
    b->decide(gv, db);
    ASSERT_EQ(da.scale.size(), db.scale.size()) << name;
    for (std::size_t i = 0; i < da.scale.size(); ++i) {
      EXPECT_EQ(da.scale[i].deployment, db.scale[i].deployment) << name;
      EXPECT_EQ(da.scale[i].replicas, db.scale[i].replicas) << name;
    }
  }
}

TEST(Parity, OneRouterAndOneBalancerPickTheSameInBothHosts) {
  // The same site views and request give the same pick through the router both hosts use, and
  // the balancer both use picks the same replica from the same loads.
  std::vector<ig::control::SiteView> views(3);
  for (int i = 0; i < 3; ++i) {
    views[static_cast<std::size_t>(i)].site = i;
    views[static_cast<std::size_t>(i)].rtt_ms = 10.0 + 30 * i;
    views[static_cast<std::size_t>(i)].outstanding = 40 - 15 * i;
    views[static_cast<std::size_t>(i)].replicas = 2;
    views[static_cast<std::size_t>(i)].kv_usage = 0.5 - 0.1 * i;
    views[static_cast<std::size_t>(i)].prefix_hit = i == 2 ? 0.8 : 0;
  }
  const ig::control::GeoRequest r{42, 1000, 1, 7};
  for (const auto& name : ig::control::site_router_names()) {
    auto twin_router = ig::control::make_site_router(name, 1);
    auto gateway_router = ig::control::make_site_router(name, 1);
    for (int k = 0; k < 20; ++k) EXPECT_EQ(twin_router->pick(r, views), gateway_router->pick(r, views)) << name;
  }
  const std::vector<int> loads{5, 3, 3, 9};
  const auto pick = ig::control::least_loaded(loads.size(), [](std::size_t) { return true; },
                                              [&](std::size_t i) { return loads[i]; });
  EXPECT_EQ(*pick, 1u);  // the first of the least loaded
}
