#pragma once
// The gateway's orchestrator: it starts and stops the replicas of each site's pools as real
// processes, the mechanism behind a controller's scale decisions in the live fabric (the twin's
// replica lifecycle is the other host's). A slot is off -> starting (process spawned, not yet
// answering /metrics) -> ready (routable) -> draining (no new requests; SIGTERM once nothing is
// in flight, SIGKILL after the pool's drain_timeout_s) -> off. A replica that exits on its own
// is counted as crashed and its slot goes off; one that is not ready in ready_timeout_s is killed
// and counted as a failed start.
#include <sys/types.h>

#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/sketch.hpp"

namespace infergrid::serve {

class Gateway;

enum class SlotPhase : int { kFixed = 0, kOff, kStarting, kReady, kDraining };

class Orchestrator {
 public:
  explicit Orchestrator(Gateway& gw);
  ~Orchestrator();  // stops every replica it started
  bool any() const { return !pools_.empty(); }
  void start();     // starts each pool's initial replicas and the reaper's timer
  void stop_all();  // SIGTERM, then SIGKILL after 2 s; waits for them
  // The phase of backend i (kFixed for a configured backend).
  SlotPhase phase(std::size_t i) const {
    return static_cast<SlotPhase>(phase_[i].load(std::memory_order_relaxed));
  }
  bool routable(std::size_t i) const {
    const auto p = phase(i);
    return p == SlotPhase::kFixed || p == SlotPhase::kReady;
  }
  // The pool of (site, model), or -1.
  int pool_of(int site, const std::string& model) const;
  // Replicas of pool p by phase: {starting, ready, draining}, its slots, its last cold start.
  struct Counts {
    int starting = 0, ready = 0, draining = 0, slots = 0;
    double last_cold_start_s = 0;
  };
  Counts counts(int pool) const;
  // Scales pool p to n replicas (ready + starting): starts off slots, or cancels starting ones
  // and drains ready ones, the least loaded first. Clamped to [0, slots].
  void scale(int pool, int n);
  // The scraper saw backend i answer /metrics.
  void scraped_ok(std::size_t i);
  std::string metrics() const;

 private:
  struct Pool {
    int site = 0, index = 0;
    std::string model;
    std::vector<std::size_t> slots;  // backend indices
    std::uint64_t starts = 0, ready = 0, stops = 0, failed = 0, crashed = 0;
    core::QuantileSketch cold_starts{0.005};  // seconds, every start that became ready
    double last_cold_start_s = 0;
  };
  struct Slot {
    pid_t pid = -1;
    std::chrono::steady_clock::time_point t_start, t_drain, t_term;
    bool termed = false, timed_out = false;
  };
  void launch(std::size_t i);      // under mu_
  void begin_drain(std::size_t i);  // under mu_
  void tick();
  void reap();  // under mu_
  Gateway& gw_;
  std::vector<Pool> pools_;
  std::vector<int> pool_index_;  // per backend: its pool in pools_, or -1
  std::unique_ptr<std::atomic<int>[]> phase_;
  std::vector<Slot> slots_;
  mutable std::mutex mu_;
  std::unique_ptr<boost::asio::steady_timer> timer_;
};

}  // namespace infergrid::serve
