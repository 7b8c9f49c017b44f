#pragma once
// Round trips over the world's long-haul fiber: a graph of hubs joined by terrestrial and
// submarine routes (data/net/fiber_routes.yaml). A route is its great circle times a route factor
// of its kind, plus a cost per hop; an endpoint reaches its nearest hubs over land. Endpoints
// less than direct_max_km apart may also go straight over land. Fitted to public cloud
// inter-region measurements (docs/latency.md), a third of the pairs held out.
#include <array>
#include <string>
#include <vector>

#include "core/geo.hpp"

namespace infergrid::net {

struct FiberParams {
  double terrestrial_factor = 1.3;  // route km per great-circle km, over land
  double submarine_factor = 1.2;    // and under the sea
  double hop_ms = 1.7;              // per hub-to-hub route (regeneration, switching)
  double direct_fixed_ms = 9.0;     // fixed part of a direct (no hub) round trip
  double hub_fixed_ms = 4.0;        // fixed part of a round trip through hubs
  double direct_max_km = 1500;
  static FiberParams calibrated();  // the built-in fit (fiber.cpp)
};

struct FiberHub {
  std::string name;
  core::LatLon pos;
};
struct FiberRoute {
  int a = 0, b = 0;
  bool submarine = false;
  double km = 0;  // great circle between the hubs
};

// One measured round trip between two named points.
struct RttPair {
  std::string source, a, b;
  core::LatLon pa, pb;
  double measured_ms = 0;
  bool held_out = false;  // a deterministic third of the pairs (by a hash of source and names)
};

class FiberModel {
 public:
  // Reads a graph file; errors name file, line and field.
  static FiberModel load(const std::string& path, FiberParams p = FiberParams::calibrated());
  // data/net/fiber_routes.yaml with the calibrated parameters, loaded once.
  static const FiberModel& builtin();

  void set_params(const FiberParams& p);
  const FiberParams& params() const { return p_; }
  double rtt_ms(core::LatLon a, core::LatLon b) const;
  const std::vector<FiberHub>& hubs() const { return hubs_; }
  const std::vector<FiberRoute>& routes() const { return routes_; }

 private:
  std::vector<int> attach(core::LatLon x) const;
  std::vector<FiberHub> hubs_;
  std::vector<FiberRoute> routes_;
  FiberParams p_;
  std::vector<double> dist_;  // hub x hub round-trip ms over the routes, hops included
};

// Reads `a,b,rtt_ms` pairs and a `name,lat,lon[,...]` locations file; skips a == b rows and names
// without coordinates; averages both directions of a pair. Errors name file, line and field.
std::vector<RttPair> read_rtt_pairs(const std::string& source, const std::string& pairs_csv,
                                    const std::string& locations_csv);
// The shipped measurements: Azure (30-day medians, 2026) and GCP (2023) inter-region round trips.
std::vector<RttPair> shipped_rtt_pairs();

struct RttError {
  std::size_t pairs = 0;
  double median = 0, p90 = 0, mean = 0;  // absolute relative error
};
RttError rtt_error(const FiberModel& m, const std::vector<RttPair>& pairs, bool held_out);
// Fits the five parameters minimizing the mean absolute relative error on the pairs not held out.
FiberParams fit_fiber(FiberModel m, const std::vector<RttPair>& pairs);

}  // namespace infergrid::net
