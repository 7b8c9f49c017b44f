#pragma once
// Streaming summary of a positive quantity: exact count, mean, min and max; quantiles from a
// log-bucketed histogram with bounded relative error (the DDSketch construction), so memory
// stays flat however many values arrive.
#include <cstdint>
#include <vector>

namespace infergrid::core {

// The exact median of a few values (the mean of the middle two for an even count; 0 when empty).
double median(std::vector<double> v);

class QuantileSketch {
 public:
  explicit QuantileSketch(double relative_accuracy = 0.005);
  void add(double v);
  std::uint64_t count() const { return count_; }
  double mean() const { return count_ ? sum_ / static_cast<double>(count_) : 0.0; }
  double min() const { return count_ ? min_ : 0.0; }
  double max() const { return count_ ? max_ : 0.0; }
  // q in [0, 1]; relative error at most the configured accuracy for values above kMinValue.
  double quantile(double q) const;
  // Adds every value of `o` (a sketch of the same accuracy).
  void merge(const QuantileSketch& o);

  static constexpr double kMinValue = 1e-9;

 private:
  double gamma_;
  double log_gamma_;
  std::vector<std::uint64_t> buckets_;
  int offset_ = 0;  // bucket index of buckets_[0]
  std::uint64_t zeros_ = 0;
  std::uint64_t count_ = 0;
  double sum_ = 0, min_ = 0, max_ = 0;
};

}  // namespace infergrid::core
