#pragma once
// `infergrid sweep`: a grid of scenarios x controllers x routers x bandwidth modes x seeds,
// each a planet run, gathered into one table (sweep.csv, sweep.json), a summary over seeds
// (median, min, max: sweep_summary.csv) and one page of comparison charts (sweep.html).
// Started under mpirun the runs spread over the ranks (sweep_mpi.cpp); otherwise they run in
// turn. A run that fails is a row with its error; the sweep goes on.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/catalog.hpp"

namespace infergrid::sweep {

struct ScenarioSpec {
  std::string name;
  std::string world;     // a world YAML; empty: the embedded default world
  std::string scenario;  // an events YAML over it; empty: none
  double hours = -1, scale = -1;  // < 0: the grid's
};

struct Grid {
  std::string name, file;
  double hours = 1, scale = 1;
  std::vector<ScenarioSpec> scenarios;
  std::vector<std::string> controllers{"static"}, routers{"nearest"}, bandwidth{"fair"};
  // `policies:` (controller and router pairs) instead of every controller with every router.
  std::vector<std::pair<std::string, std::string>> policies;
  std::vector<std::uint64_t> seeds{1};
};

// Reads a grid YAML (paths relative to its folder); errors name the file, line and field.
Grid load_grid(const std::string& path);

struct RunSpec {
  std::size_t index = 0;
  std::size_t scenario = 0;
  std::string controller, router, bandwidth;
  std::uint64_t seed = 1;
};
// Every combination, scenario-major, in a fixed order.
std::vector<RunSpec> expand(const Grid& g);

// Runs one planet and returns its row as a JSON object (text): the run's keys, `status` ("ok" or
// "failed"), `error` when failed, and its metrics (docs/control.md "Sweeps"). Never throws.
std::string run_one(const Grid& g, const RunSpec& r, const model::Catalog& catalog);

// Writes sweep.csv, sweep.json, sweep_summary.csv and sweep.html into dir; rows in run order.
// Returns the page's path.
std::string write_outputs(const std::string& dir, const Grid& g, const std::vector<std::string>& rows);

// Runs fn(i) for i in [0, n): under mpirun (more than one rank) rank 0 hands out the next index to
// each rank that finishes one and gathers the rows; otherwise in turn. On rank 0 (or alone) returns
// the rows in index order and sets is_root; on the other ranks returns nothing.
std::vector<std::string> run_distributed(std::size_t n, const std::function<std::string(std::size_t)>& fn,
                                         bool& is_root, int& ranks);

// The whole command: load, run (distributed when under mpirun), write on rank 0. Returns the
// exit code: 0 when every run succeeded, 1 when some failed (their rows say why).
int run_sweep(const std::string& grid_path, const std::string& out, const model::Catalog& catalog);

}  // namespace infergrid::sweep
