#pragma once
// Helpers the autoscalers share: a parameter for one deployment (NAME@MODEL over NAME), and a
// replica count clamped to [min_replicas, what the pool could hold].
#include <algorithm>
#include <cmath>
#include <string>

#include "control/fleet.hpp"

namespace infergrid::control {

inline double param(const Params& p, const std::string& name, const DeploymentState& d) {
  if (const auto it = p.find(name + "@" + d.model); it != p.end()) return it->second;
  return p.at(name);
}

inline int clamp_replicas(double want, const DeploymentState& d, double min_replicas) {
  const int lo = static_cast<int>(std::min<double>(min_replicas, d.max_replicas));
  return std::clamp(static_cast<int>(std::ceil(want - 1e-9)), lo, std::max(lo, d.max_replicas));
}

// infergrid's own controller (infergrid_controller.cpp); p: its merged parameters.
std::unique_ptr<Controller> make_infergrid_controller(Params p);

}  // namespace infergrid::control
