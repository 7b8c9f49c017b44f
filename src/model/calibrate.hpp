#pragma once
// Holding the performance model against measurements, and re-fitting its efficiency factors.
#include <string>
#include <vector>

#include "model/catalog.hpp"
#include "model/perf_model.hpp"

namespace infergrid::model {

// One configuration of the measured CSV, with the median of its repetitions.
struct MeasuredGroup {
  std::string model, gpu;
  int tp = 0, prompt = 0, batch = 0, output = 0, repetitions = 0;
  double prompt_ms = 0, token_ms = 0, e2e_ms = 0;
  // Median measured average power per accelerator over the run, as a fraction of board power
  // (the CSV's average_power); 0 where the file has no power for the group (H100 rows are 0).
  double avg_power_frac = 0;
  // False when the measurement contradicts an isolated batch: its e2e time exceeds twice
  // prompt_time + output x token_time (the TP-2 batches of 64 thrash the KV cache and run
  // ~15x longer). Such groups are shown but kept out of the error means and the fit.
  bool isolated = true;
};

// Reads the Splitwise measurement CSV (columns model, hardware, prompt_size, batch_size,
// token_size, prompt_time, token_time, e2e_time, tensor_parallel).
std::vector<MeasuredGroup> load_measurements(const std::string& path);

// How predictions mirror the measuring harness: vLLM-style paged KV.
struct Harness {
  KvReservation reservation = KvReservation::kPaged;
  int max_model_len = 0;
  double gpu_memory_utilization = 0.9;
};

struct GroupResult {
  MeasuredGroup measured;
  IsolatedBatch predicted;
  double prompt_err = 0, token_err = 0;  // |predicted - measured| / measured
  double measured_w = 0, predicted_w = 0, power_err = 0;  // per accelerator; 0 when not measured
  bool power_plausible = false;  // measured above 1.25 x idle: counted in the power MAPE
};

struct Validation {
  std::vector<GroupResult> groups;
  double mape_prompt = 0, mape_token = 0;  // over isolated groups
  std::size_t counted = 0;
  double mape_power = 0;  // over isolated groups with measured power
  std::size_t power_counted = 0;
};

Validation validate(const Catalog& catalog, const std::vector<MeasuredGroup>& groups,
                    const Harness& harness = {});

// Fits the Calibration of one accelerator (Nelder-Mead with seeded restarts) minimizing the sum
// of the prompt and token MAPEs over its groups.
Calibration fit_calibration(const Catalog& catalog, const std::string& gpu,
                            const std::vector<MeasuredGroup>& groups, const Harness& harness = {},
                            int restarts = 6);

// Markdown tables of a validation: per group and per (accelerator, TP); then average power
// against the measured for the groups that have it.
std::string validation_markdown(const Validation& v);

}  // namespace infergrid::model
