// infergrid's flow-level network (net::FlowNetwork) against SimGrid's (S4U, CM02 max-min, no
// latency, no TCP window, no cross traffic) on the same flow sets: flows over the embedded
// world's DCI links, along lowest-latency routes, arriving over time with heavy-tailed sizes.
// Prints each engine's completion times, their largest relative difference, and the wall time of
// each, measured in the same run.
//
//   simgrid_compare [FLOWS=20000] [SEED=1] [WORLD=data/world/default.yaml]
#include <simgrid/s4u.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "model/catalog.hpp"
#include "net/flow_network.hpp"
#include "world/world.hpp"

namespace ig = infergrid;
namespace sg4 = simgrid::s4u;

namespace {

struct FlowSpec {
  int src = 0, dst = 0;
  double start = 0, bytes = 0;
  std::vector<int> links;  // directed: 2l (a->b), 2l+1 (b->a)
};

std::vector<std::vector<int>> all_routes(const ig::world::World& w) {
  const std::size_t S = w.sites.size();
  std::vector<std::vector<std::pair<int, int>>> adj(S);
  for (std::size_t l = 0; l < w.links.size(); ++l) {
    adj[static_cast<std::size_t>(w.links[l].a)].push_back({w.links[l].b, static_cast<int>(2 * l)});
    adj[static_cast<std::size_t>(w.links[l].b)].push_back({w.links[l].a, static_cast<int>(2 * l + 1)});
  }
  std::vector<std::vector<int>> routes(S * S);
  for (std::size_t s = 0; s < S; ++s) {
    std::vector<double> dist(S, 1e300);
    std::vector<int> via(S, -1);
    std::priority_queue<std::pair<double, int>, std::vector<std::pair<double, int>>, std::greater<>> pq;
    dist[s] = 0;
    pq.push({0, static_cast<int>(s)});
    while (!pq.empty()) {
      auto [d, u] = pq.top();
      pq.pop();
      if (d > dist[static_cast<std::size_t>(u)]) continue;
      for (auto [v, dl] : adj[static_cast<std::size_t>(u)]) {
        const double nd = d + w.links[static_cast<std::size_t>(dl / 2)].km + 20;
        if (nd < dist[static_cast<std::size_t>(v)]) {
          dist[static_cast<std::size_t>(v)] = nd;
          via[static_cast<std::size_t>(v)] = dl;
          pq.push({nd, v});
        }
      }
    }
    for (std::size_t t = 0; t < S; ++t) {
      auto& r = routes[s * S + t];
      for (int v = static_cast<int>(t); v != static_cast<int>(s) && via[static_cast<std::size_t>(v)] >= 0;) {
        const int dl = via[static_cast<std::size_t>(v)];
        r.push_back(dl);
        const auto& lk = w.links[static_cast<std::size_t>(dl / 2)];
        v = dl % 2 == 0 ? lk.a : lk.b;
      }
      std::reverse(r.begin(), r.end());
    }
  }
  return routes;
}

// infergrid: an event loop over FlowNetwork, as the twin runs it.
std::vector<double> run_infergrid(const ig::world::World& w, const std::vector<FlowSpec>& flows) {
  ig::net::FlowNetwork fn;
  for (const auto& l : w.links) {
    fn.add_link(l.gbps * 1e9 / 8);
    fn.add_link(l.gbps * 1e9 / 8);
  }
  std::vector<double> done(flows.size(), -1), remaining(flows.size()), rate(flows.size(), 0), last(flows.size(), 0);
  std::vector<int> id_of(flows.size(), -1), flow_of;
  std::vector<std::uint32_t> gen;
  using Ev = std::tuple<double, std::uint64_t, int, std::uint32_t>;  // time, seq, flow (or -1-start), gen
  std::priority_queue<Ev, std::vector<Ev>, std::greater<>> q;
  std::uint64_t seq = 0;
  for (std::size_t i = 0; i < flows.size(); ++i) q.push({flows[i].start, seq++, -1 - static_cast<int>(i), 0});
  while (!q.empty()) {
    auto [t, s, who, g] = q.top();
    q.pop();
    if (who < 0) {
      const auto i = static_cast<std::size_t>(-1 - who);
      const int id = fn.start_flow(flows[i].links);
      if (static_cast<std::size_t>(id) >= flow_of.size()) flow_of.resize(static_cast<std::size_t>(id) + 1), gen.resize(static_cast<std::size_t>(id) + 1);
      flow_of[static_cast<std::size_t>(id)] = static_cast<int>(i);
      id_of[i] = id;
      remaining[i] = flows[i].bytes;
      last[i] = t;
      rate[i] = 0;
    } else {
      if (g != gen[static_cast<std::size_t>(who)]) continue;
      const auto i = static_cast<std::size_t>(flow_of[static_cast<std::size_t>(who)]);
      done[i] = t;
      fn.end_flow(who);
      ++gen[static_cast<std::size_t>(who)];
    }
    fn.update();
    for (int id : fn.rerated()) {
      const auto i = static_cast<std::size_t>(flow_of[static_cast<std::size_t>(id)]);
      remaining[i] -= rate[i] * (t - last[i]);
      last[i] = t;
      rate[i] = fn.rate(id);
      ++gen[static_cast<std::size_t>(id)];
      if (rate[i] > 0) q.push({t + std::max(0.0, remaining[i]) / rate[i], seq++, id, gen[static_cast<std::size_t>(id)]});
    }
  }
  return done;
}

// SimGrid: one host per site, one link per direction, one route per host pair; one actor starts
// every communication at its time; finish times read when all are done.
std::vector<double> run_simgrid(int argc, char** argv, const ig::world::World& w, const std::vector<FlowSpec>& flows,
                                const std::vector<std::vector<int>>& routes) {
  std::vector<char*> args(argv, argv + argc);
  std::string cfgs[] = {"--cfg=network/model:CM02", "--cfg=network/crosstraffic:0", "--cfg=network/TCP-gamma:0",
                        "--cfg=network/weight-S:0", "--cfg=network/latency-factor:1",
                        "--cfg=network/bandwidth-factor:1", "--log=root.thres:critical"};
  for (auto& c : cfgs) args.push_back(c.data());
  int n = static_cast<int>(args.size());
  sg4::Engine e(&n, args.data());
  auto* zone = sg4::create_full_zone("planet");
  std::vector<sg4::Host*> hosts;
  for (const auto& s : w.sites) hosts.push_back(zone->create_host(s.id, 1e9));
  std::vector<sg4::Link*> links;
  for (std::size_t l = 0; l < w.links.size(); ++l) {
    for (int d = 0; d < 2; ++d) {
      auto* lk = zone->create_link("l" + std::to_string(2 * l + d), w.links[l].gbps * 1e9 / 8);
      lk->set_latency(0);
      lk->seal();
      links.push_back(lk);
    }
  }
  const std::size_t S = w.sites.size();
  std::vector<char> need(S * S, 0);
  for (const auto& f : flows) need[static_cast<std::size_t>(f.src) * S + static_cast<std::size_t>(f.dst)] = 1;
  for (std::size_t a = 0; a < S; ++a)
    for (std::size_t b = 0; b < S; ++b) {
      if (!need[a * S + b]) continue;
      std::vector<sg4::LinkInRoute> path;
      for (int dl : routes[a * S + b]) path.emplace_back(links[static_cast<std::size_t>(dl)]);
      zone->add_route(hosts[a]->get_netpoint(), hosts[b]->get_netpoint(), nullptr, nullptr, path, false);
    }
  zone->seal();
  std::vector<double> done(flows.size(), -1);
  std::vector<sg4::CommPtr> comms(flows.size());
  sg4::Actor::create("driver", hosts[0], [&]() {
    for (std::size_t i = 0; i < flows.size(); ++i) {
      sg4::this_actor::sleep_until(flows[i].start);
      comms[i] = sg4::Comm::sendto_async(hosts[static_cast<std::size_t>(flows[i].src)],
                                         hosts[static_cast<std::size_t>(flows[i].dst)],
                                         static_cast<std::uint64_t>(flows[i].bytes));
    }
    sg4::Comm::wait_all(comms);
    for (std::size_t i = 0; i < flows.size(); ++i) done[i] = comms[i]->get_finish_time();
  });
  e.run();
  return done;
}

}  // namespace

int main(int argc, char** argv) {
  const int nflows = argc > 1 ? std::atoi(argv[1]) : 20000;
  const std::uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  const std::string world_path = argc > 3 ? argv[3] : ig::world::default_world_path();
  const auto w = ig::world::load_world(world_path, ig::model::Catalog::builtin());
  const auto routes = all_routes(w);
  ig::core::Rng rng(seed, "simgrid-compare");
  std::vector<FlowSpec> flows;
  double t = 0;
  const std::size_t S = w.sites.size();
  while (static_cast<int>(flows.size()) < nflows) {
    FlowSpec f;
    f.src = static_cast<int>(rng.below(S));
    f.dst = static_cast<int>(rng.below(S));
    if (f.src == f.dst) continue;
    t += -std::log(rng.uniform()) * 0.002;  // 500 flows/s
    f.start = t;
    // Heavy-tailed sizes: 1 MB retrievals to 100 GB syncs (log-uniform).
    f.bytes = std::round(std::exp(std::log(1e6) + rng.uniform() * (std::log(1e11) - std::log(1e6))));
    f.links = routes[static_cast<std::size_t>(f.src) * S + static_cast<std::size_t>(f.dst)];
    flows.push_back(std::move(f));
  }
  auto t0 = std::chrono::steady_clock::now();
  const auto ours = run_infergrid(w, flows);
  const double ours_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  t0 = std::chrono::steady_clock::now();
  const auto theirs = run_simgrid(argc > 0 ? 1 : 0, argv, w, flows, routes);
  const double theirs_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double worst = 0, sum = 0;
  std::size_t worst_i = 0;
  for (std::size_t i = 0; i < flows.size(); ++i) {
    const double dur_ours = ours[i] - flows[i].start, dur_theirs = theirs[i] - flows[i].start;
    const double rel = std::fabs(dur_ours - dur_theirs) / std::max(1e-12, dur_theirs);
    sum += rel;
    if (rel > worst) worst = rel, worst_i = i;
  }
  std::printf("flows %d over %zu directed links of %s; last completion: infergrid %.6f s, SimGrid %.6f s\n", nflows,
              2 * w.links.size(), w.name.c_str(), *std::max_element(ours.begin(), ours.end()),
              *std::max_element(theirs.begin(), theirs.end()));
  std::printf("transfer-time difference: mean %.3g, max %.3g (flow %zu: %.9f s vs %.9f s)\n", sum / flows.size(), worst,
              worst_i, ours[worst_i] - flows[worst_i].start, theirs[worst_i] - flows[worst_i].start);
  std::printf("wall time: infergrid %.3f s, SimGrid %.3f s; SimGrid / infergrid = %.2f\n", ours_s, theirs_s,
              theirs_s / ours_s);
  return worst < 1e-3 ? 0 : 1;
}
