#pragma once
// The run's summary: DIR/summary.json (stable key order, no wall-clock fields, so a seed fixes
// it byte for byte) and a readable version for the terminal.
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

#include "sim/metrics.hpp"
#include "sim/site_sim.hpp"

namespace infergrid::sim {

struct RunInfo {
  // Configuration echoed into the summary, in order.
  std::vector<std::pair<std::string, std::string>> config;
  bool prefix_caching = false;
};

// mean, p50, p90, p99, max of a sketch (and its count first, if asked), as the summaries print them.
nlohmann::ordered_json sketch_json(const core::QuantileSketch& s, bool with_count = false);

std::string summary_json(const RunInfo& info, const SiteResult& r, const Metrics& m);
std::string summary_text(const SiteResult& r, const Metrics& m);

}  // namespace infergrid::sim
