#include "core/geo.hpp"

#include <algorithm>
#include <cmath>

#include "core/csv.hpp"

namespace infergrid::core {

double great_circle_km(LatLon a, LatLon b) {
  constexpr double kR = 6371.0, kRad = M_PI / 180;
  const double dlat = (b.lat - a.lat) * kRad, dlon = (b.lon - a.lon) * kRad;
  const double h = std::sin(dlat / 2) * std::sin(dlat / 2) +
                   std::cos(a.lat * kRad) * std::cos(b.lat * kRad) * std::sin(dlon / 2) * std::sin(dlon / 2);
  return 2 * kR * std::asin(std::min(1.0, std::sqrt(h)));
}

bool parse_latlon(const std::string& s, LatLon& out) {
  const auto comma = s.find(',');
  if (comma == std::string::npos) return false;
  if (!parse_double(s.substr(0, comma), out.lat) || !parse_double(s.substr(comma + 1), out.lon)) return false;
  return std::fabs(out.lat) <= 90 && std::fabs(out.lon) <= 180;
}

}  // namespace infergrid::core
