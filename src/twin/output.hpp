#pragma once
// What a planet run leaves in its output folder: summary.json (stable key order, no wall-clock
// fields: a seed fixes it byte for byte), timeseries.csv, sites.csv, links.csv, metros.csv,
// staleness.csv, and report.html (one self-contained page: world map and charts).
#include <string>
#include <vector>

#include "twin/planet.hpp"
#include "world/world.hpp"

namespace infergrid::twin {

// A site's facility energy (accelerators x PUE) in kWh, and its carbon in kg.
double site_facility_kwh(const world::World& w, const PlanetResult& r, std::size_t site);
double site_carbon_kg(const world::World& w, const PlanetResult& r, std::size_t site);

// The `n` links with the highest peak utilization, busiest first (ties in link order).
std::vector<std::size_t> busiest_links(const PlanetResult& r, std::size_t n);

std::string planet_summary_json(const world::World& w, const PlanetConfig& cfg, const PlanetResult& r);
std::string planet_summary_text(const world::World& w, const PlanetResult& r);
// Writes every file above into `dir` (created if needed); returns the report's path.
std::string write_planet_outputs(const std::string& dir, const world::World& w, const PlanetConfig& cfg,
                                 const PlanetResult& r);
// The page alone, from the summary's data (Vega, Vega-Lite, vega-embed and world-atlas read
// from core::web_dir()/node_modules and inlined). InputError if the front-end parts are missing.
std::string report_html(const world::World& w, const PlanetConfig& cfg, const PlanetResult& r);

}  // namespace infergrid::twin
