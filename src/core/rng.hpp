#pragma once
// Seeded random streams (xoshiro256**, seeded by splitmix64). Every stream is derived from the
// run's seed and a stream name, so adding a stream never perturbs another.
#include <cstdint>
#include <limits>
#include <string_view>

namespace infergrid::core {

class Rng {
 public:
  using result_type = std::uint64_t;
  explicit Rng(std::uint64_t seed, std::string_view stream = {}) {
    std::uint64_t x = seed;
    for (char c : stream) x = (x ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
    for (auto& s : s_) s = splitmix(x);
  }
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<result_type>::max(); }
  result_type operator()() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in (0, 1): never 0, so log(u) is finite.
  double uniform() { return (static_cast<double>((*this)() >> 11) + 0.5) * 0x1.0p-53; }
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : (*this)() % n; }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::uint64_t s_[4];
};

}  // namespace infergrid::core
