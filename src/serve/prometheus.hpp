#pragma once
// Prometheus text exposition: histograms and counters to write; gauges to read from a scrape.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace infergrid::serve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double v);
  // `# TYPE` line, cumulative buckets, _sum and _count, with `labels` (e.g. model_name="x").
  void write(std::string& out, const std::string& name, const std::string& help, const std::string& labels,
             bool header = true) const;
  std::uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<std::uint64_t> counts_;
  double sum_ = 0;
  std::uint64_t count_ = 0;
};

void write_gauge(std::string& out, const std::string& name, const std::string& help, const std::string& labels,
                 double v, const char* type = "gauge");

// The value of the first sample named `name` (any labels) in a scrape; false if absent.
bool scrape_value(std::string_view text, std::string_view name, double& out);

}  // namespace infergrid::serve
