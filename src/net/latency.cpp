#include "net/latency.hpp"

#include <fmt/format.h>

#include <cmath>
#include <map>

#include "core/csv.hpp"
#include "core/error.hpp"

namespace infergrid::net {

RttModel RttModel::calibrated() {
  // The robust fit `infergrid geo calibrate` prints for data/net/wonderproxy_2011_rtt.csv
  // (72 measured city pairs, public internet, 2011): paths 1.68x the great circle, 8 ms fixed.
  RttModel m;
  m.route_factor = 1.680;
  m.fixed_ms = 8.01;
  return m;
}

std::vector<RttSample> read_rtt_matrix(const std::string& path) {
  core::LineReader in(path);
  std::string line;
  std::vector<std::string> f, header;
  std::map<std::string, core::LatLon> where;
  std::vector<std::pair<std::string, std::vector<std::string>>> rows;
  std::vector<std::int64_t> row_lines;
  while (in.next(line)) {
    if (core::trim(line).empty() || line[0] == '#') continue;
    if (!core::split_csv(line, f)) core::fail_input(path, in.line_number(), "", "unterminated quote");
    if (header.empty()) {
      header = f;
      if (header.size() < 4 || header[0] != "city" || header[1] != "lat" || header[2] != "lon")
        core::fail_input(path, in.line_number(), "", "expected header city,lat,lon,<cities>");
      continue;
    }
    if (f.size() != header.size())
      core::fail_input(path, in.line_number(), "", fmt::format("expected {} fields, found {}", header.size(), f.size()));
    core::LatLon p;
    if (!core::parse_double(f[1], p.lat) || std::fabs(p.lat) > 90) core::fail_input(path, in.line_number(), "lat", "expected degrees");
    if (!core::parse_double(f[2], p.lon) || std::fabs(p.lon) > 180) core::fail_input(path, in.line_number(), "lon", "expected degrees");
    where[f[0]] = p;
    rows.emplace_back(f[0], f);
    row_lines.push_back(in.line_number());
  }
  std::vector<RttSample> out;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto& [from, cells] = rows[r];
    for (std::size_t c = 3; c < header.size(); ++c) {
      if (core::trim(cells[c]).empty()) continue;
      double ms = 0;
      if (!core::parse_double(cells[c], ms) || ms <= 0)
        core::fail_input(path, row_lines[r], header[c], "expected a positive RTT in ms");
      auto it = where.find(header[c]);
      if (it == where.end()) core::fail_input(path, row_lines[r], header[c], "no row gives this city's coordinates");
      out.push_back(RttSample{from, header[c], core::great_circle_km(where[from], it->second), ms});
    }
  }
  return out;
}

RttModel fit_rtt(const std::vector<RttSample>& s) {
  // Least absolute deviations of measured = a + b x km, by iteratively reweighted least squares:
  // a few detoured routes (Baltimore - New York measured at 175 ms over 276 km) must not set the
  // model for all the others, as they would under ordinary least squares.
  RttModel m;
  if (s.size() < 2) return m;
  std::vector<double> w(s.size(), 1.0);
  double a = 0, b = 0;
  for (int it = 0; it < 50; ++it) {
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      n += w[i];
      sx += w[i] * s[i].km;
      sy += w[i] * s[i].measured_ms;
      sxx += w[i] * s[i].km * s[i].km;
      sxy += w[i] * s[i].km * s[i].measured_ms;
    }
    b = (n * sxy - sx * sy) / (n * sxx - sx * sx);
    a = (sy - b * sx) / n;
    for (std::size_t i = 0; i < s.size(); ++i)
      w[i] = 1.0 / std::max(std::fabs(s[i].measured_ms - a - b * s[i].km), 0.5);
  }
  m.route_factor = b / (2 * RttModel::kFiberMsPerKm);
  m.fixed_ms = a;
  return m;
}

}  // namespace infergrid::net
