#include "control/router.hpp"

#include <fmt/format.h>

#include "control/balancer.hpp"
#include "core/error.hpp"

namespace infergrid::control {

namespace {

class RoundRobin final : public Router {
 public:
  std::optional<std::size_t> pick(const RouteRequest&, const ClusterView& v) override {
    if (v.replicas.empty()) return std::nullopt;
    return next_++ % v.replicas.size();
  }

 private:
  std::size_t next_ = 0;
};

// Fewest outstanding requests; ties go to the lowest index: the balancer the twin and the
// gateway use inside a site.
std::optional<std::size_t> least(const ClusterView& v) {
  return least_loaded(v.replicas.size(), [](std::size_t) { return true; },
                      [&](std::size_t i) { return v.replicas[i].outstanding; });
}

class LeastOutstanding final : public Router {
 public:
  std::optional<std::size_t> pick(const RouteRequest&, const ClusterView& v) override {
    return least(v);
  }
};

// Two distinct replicas drawn uniformly; the less loaded wins (Mitzenmacher's power of two).
class PowerOfTwo final : public Router {
 public:
  explicit PowerOfTwo(std::uint64_t seed) : rng_(seed, "router/power-of-two") {}
  std::optional<std::size_t> pick(const RouteRequest&, const ClusterView& v) override {
    const std::size_t n = v.replicas.size();
    if (n == 0) return std::nullopt;
    if (n == 1) return 0;
    const std::size_t a = rng_.below(n);
    std::size_t b = rng_.below(n - 1);
    if (b >= a) ++b;
    return v.replicas[b].outstanding < v.replicas[a].outstanding ? b : a;
  }

 private:
  core::Rng rng_;
};

class CentralQueue final : public Router {
 public:
  std::optional<std::size_t> pick(const RouteRequest&, const ClusterView& v) override {
    auto i = least(v);
    if (!i || v.replicas[*i].outstanding >= v.replicas[*i].max_num_seqs) return std::nullopt;
    return i;
  }
};

}  // namespace

std::vector<std::string> router_names() {
  return {"round-robin", "least-outstanding", "power-of-two", "central-queue"};
}

std::unique_ptr<Router> make_router(const std::string& name, std::uint64_t seed) {
  if (name == "round-robin") return std::make_unique<RoundRobin>();
  if (name == "least-outstanding") return std::make_unique<LeastOutstanding>();
  if (name == "power-of-two") return std::make_unique<PowerOfTwo>(seed);
  if (name == "central-queue") return std::make_unique<CentralQueue>();
  core::fail_flag("router", fmt::format("unknown router '{}' (known: {})", name,
                                        fmt::join(router_names(), ", ")));
}

}  // namespace infergrid::control
