#pragma once
// Per-request records (streamed to requests.csv) and the run's summary, in memory flat in the
// number of requests.
#include <cstdio>
#include <string>

#include "core/sketch.hpp"
#include "engine/replica.hpp"

namespace infergrid::sim {

struct Slo {
  double ttft_ms = 0;  // 0: no bound
  double tpot_ms = 0;
};

class Metrics {
 public:
  explicit Metrics(Slo slo) : slo_(slo) {}
  ~Metrics();
  // Streams one CSV row per request to `path` (empty: no file).
  void open_requests_csv(const std::string& path);
  void record(const engine::Completion& c);
  void close();

  std::uint64_t completed() const { return completed_; }
  std::uint64_t rejected() const { return rejected_; }
  std::uint64_t met_slo() const { return met_slo_; }
  std::uint64_t output_tokens() const { return output_tokens_; }
  const core::QuantileSketch& ttft() const { return ttft_; }
  const core::QuantileSketch& tpot() const { return tpot_; }
  const core::QuantileSketch& e2e() const { return e2e_; }
  const core::QuantileSketch& queue() const { return queue_; }
  const core::QuantileSketch& request_energy() const { return energy_; }
  core::Ns last_finish() const { return last_finish_; }
  const Slo& slo() const { return slo_; }

 private:
  Slo slo_;
  std::FILE* csv_ = nullptr;
  std::string buf_;
  std::uint64_t completed_ = 0, rejected_ = 0, met_slo_ = 0, output_tokens_ = 0;
  core::QuantileSketch ttft_, tpot_, e2e_, queue_, energy_;
  core::Ns last_finish_ = 0;
};

}  // namespace infergrid::sim
