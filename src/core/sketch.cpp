#include "core/sketch.hpp"

#include <algorithm>
#include <cmath>

namespace infergrid::core {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

QuantileSketch::QuantileSketch(double relative_accuracy)
    : gamma_((1 + relative_accuracy) / (1 - relative_accuracy)), log_gamma_(std::log(gamma_)) {}

void QuantileSketch::add(double v) {
  if (count_ == 0) {
    min_ = max_ = v;
  } else {
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
  }
  ++count_;
  sum_ += v;
  if (v <= kMinValue) {
    ++zeros_;
    return;
  }
  const int idx = static_cast<int>(std::ceil(std::log(v) / log_gamma_));
  if (buckets_.empty()) {
    offset_ = idx;
    buckets_.assign(1, 0);
  } else if (idx < offset_) {
    buckets_.insert(buckets_.begin(), static_cast<std::size_t>(offset_ - idx), 0);
    offset_ = idx;
  } else if (idx >= offset_ + static_cast<int>(buckets_.size())) {
    buckets_.resize(static_cast<std::size_t>(idx - offset_ + 1), 0);
  }
  ++buckets_[static_cast<std::size_t>(idx - offset_)];
}

void QuantileSketch::merge(const QuantileSketch& o) {
  if (o.count_ == 0) return;
  if (count_ == 0) {
    min_ = o.min_, max_ = o.max_;
  } else {
    min_ = std::min(min_, o.min_);
    max_ = std::max(max_, o.max_);
  }
  count_ += o.count_;
  sum_ += o.sum_;
  zeros_ += o.zeros_;
  if (o.buckets_.empty()) return;
  if (buckets_.empty()) {
    buckets_ = o.buckets_;
    offset_ = o.offset_;
    return;
  }
  const int lo = std::min(offset_, o.offset_);
  const int hi = std::max(offset_ + static_cast<int>(buckets_.size()), o.offset_ + static_cast<int>(o.buckets_.size()));
  std::vector<std::uint64_t> b(static_cast<std::size_t>(hi - lo), 0);
  for (std::size_t i = 0; i < buckets_.size(); ++i) b[static_cast<std::size_t>(offset_ - lo) + i] += buckets_[i];
  for (std::size_t i = 0; i < o.buckets_.size(); ++i) b[static_cast<std::size_t>(o.offset_ - lo) + i] += o.buckets_[i];
  buckets_ = std::move(b);
  offset_ = lo;
}

double QuantileSketch::quantile(double q) const {
  if (count_ == 0) return 0.0;
  if (q <= 0) return min_;
  if (q >= 1) return max_;
  // Rank of the q-quantile among count_ values (nearest-rank definition).
  const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  std::uint64_t seen = zeros_;
  if (seen >= rank) return 0.0;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen >= rank) {
      const int idx = offset_ + static_cast<int>(i);
      const double v = 2 * std::pow(gamma_, idx) / (gamma_ + 1);
      return std::clamp(v, min_, max_);
    }
  }
  return max_;
}

}  // namespace infergrid::core
