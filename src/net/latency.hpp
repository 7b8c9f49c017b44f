#pragma once
// Round-trip time between two points: light in fiber (about 5 us per km, one way) over the
// great-circle distance stretched by a route factor, plus a fixed term for access, switching and
// the end hosts. The factors are fitted to public measurements by `infergrid geo calibrate`
// (docs/latency.md).
#include <string>
#include <vector>

#include "core/geo.hpp"

namespace infergrid::net {

struct RttModel {
  static constexpr double kFiberMsPerKm = 0.005;  // one way
  double route_factor = 1.0;
  double fixed_ms = 0.0;
  double rtt_ms(core::LatLon a, core::LatLon b) const {
    return fixed_ms + 2 * kFiberMsPerKm * route_factor * core::great_circle_km(a, b);
  }
  // The built-in fit (see latency.cpp for the numbers it came from).
  static RttModel calibrated();
};

struct RttSample {
  std::string from, to;
  double km = 0, measured_ms = 0;
};

// Reads a measured RTT matrix CSV: `city,lat,lon,<city>...` then one row per city (empty cells
// skipped, '#' lines are comments). Errors name file, line and field.
std::vector<RttSample> read_rtt_matrix(const std::string& path);
// Robust (least absolute deviations) fit of rtt = fixed + 2 x 0.005 x factor x km.
RttModel fit_rtt(const std::vector<RttSample>& samples);

}  // namespace infergrid::net
