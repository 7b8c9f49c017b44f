#pragma once
// Points on the Earth and distances between them.
#include <string>

namespace infergrid::core {

struct LatLon {
  double lat = 0, lon = 0;
};

// Great-circle distance in km (haversine, mean Earth radius 6371 km).
double great_circle_km(LatLon a, LatLon b);
// Parses "LAT,LON" (degrees); false if malformed or out of range.
bool parse_latlon(const std::string& s, LatLon& out);

}  // namespace infergrid::core
