#pragma once
// Helpers shared by the tests: in-memory request streams, simple service laws, and one call to
// run a site.
#include <memory>
#include <vector>

#include "model/perf_model.hpp"
#include "sim/site_sim.hpp"

namespace infergrid::testing_util {

class VectorSource final : public workload::RequestSource {
 public:
  explicit VectorSource(std::vector<workload::Request> v) : v_(std::move(v)) {}
  bool next(workload::Request& r) override {
    if (i_ >= v_.size()) return false;
    r = v_[i_++];
    return true;
  }

 private:
  std::vector<workload::Request> v_;
  std::size_t i_ = 0;
};

// Every iteration takes a fixed time: prefill_s if it prefills, else decode_s.
class ConstantStep final : public model::StepModel {
 public:
  ConstantStep(double prefill_s, double decode_s) : prefill_s_(prefill_s), decode_s_(decode_s) {}
  model::IterationCost iteration(const model::BatchShape& s) const override {
    return {s.prefill_tokens > 0 ? prefill_s_ : decode_s_, 100};
  }
  model::DecodeLine decode_line(int) const override { return {decode_s_, 0, 100}; }
  double idle_power_w() const override { return 10; }
  int accelerators() const override { return 1; }

 private:
  double prefill_s_, decode_s_;
};

struct Run {
  sim::SiteResult result;
  std::vector<engine::Completion> completions;
};

inline Run run_site(std::shared_ptr<const model::StepModel> step, std::int64_t kv_tokens,
                    const sim::SiteConfig& cfg, workload::RequestSource& src) {
  Run run;
  sim::Metrics m(sim::Slo{});
  sim::SiteSim s(std::move(step), kv_tokens, cfg);
  run.result = s.run(src, m, {}, &run.completions);
  return run;
}

}  // namespace infergrid::testing_util
