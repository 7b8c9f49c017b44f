#pragma once
// Units of the kernel: integer nanoseconds for time; doubles in SI units elsewhere.
#include <cmath>
#include <cstdint>
#include <limits>

namespace infergrid::core {

using Ns = std::int64_t;
inline constexpr Ns kNsPerSec = 1'000'000'000;
inline constexpr Ns kNever = std::numeric_limits<Ns>::max();
inline constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

inline Ns from_seconds(double s) { return static_cast<Ns>(std::llround(s * 1e9)); }
inline double to_seconds(Ns t) { return static_cast<double>(t) * 1e-9; }
inline double to_ms(Ns t) { return static_cast<double>(t) * 1e-6; }

}  // namespace infergrid::core
