#pragma once
// The deterministic event queue: events ordered by (time, sequence number), so equal times
// break ties in scheduling order and a seed fixes the run byte for byte.
#include <cstdint>
#include <vector>

#include "core/units.hpp"

namespace infergrid::sim {

struct Event {
  core::Ns t = 0;
  std::uint64_t seq = 0;
  std::int32_t target = 0;  // who handles it (a replica, a flow, a request slot), by kind
  std::uint32_t generation = 0;
  std::uint8_t kind = 0;    // the host's typed event kind (0 where a host has one kind)
};

// A 4-ary min-heap: half the levels of a binary heap, and a node's children share a cache line
// or two, so a pop touches fewer lines (the planet twin pops about 6 events per request). The
// order is total, so the pops are the same as any other heap's, byte for byte.
class EventQueue {
 public:
  void push(core::Ns t, std::int32_t target, std::uint32_t generation = 0) {
    sift_up(Event{t, next_seq_++, target, generation, 0});
  }
  // A typed event: `kind` is the host's enum, `target` and `generation` what that kind needs.
  template <class Kind>
  void push_kind(core::Ns t, Kind kind, std::int32_t target = 0, std::uint32_t generation = 0) {
    sift_up(Event{t, next_seq_++, target, generation, static_cast<std::uint8_t>(kind)});
  }
  bool empty() const { return heap_.empty(); }
  const Event& top() const { return heap_.front(); }
  Event pop() {
    const Event e = heap_.front();
    const Event last = heap_.back();
    heap_.pop_back();
    const std::size_t n = heap_.size();
    if (n == 0) return e;
    std::size_t i = 0;
    while (true) {
      const std::size_t c = kArity * i + 1;
      if (c >= n) break;
      std::size_t best = c;
      const std::size_t end = c + kArity < n ? c + kArity : n;
      for (std::size_t k = c + 1; k < end; ++k)
        if (before(heap_[k], heap_[best])) best = k;
      if (!before(heap_[best], last)) break;
      heap_[i] = heap_[best];
      i = best;
    }
    heap_[i] = last;
    return e;
  }
  std::size_t size() const { return heap_.size(); }

 private:
  static constexpr std::size_t kArity = 4;
  static bool before(const Event& a, const Event& b) {
    return a.t != b.t ? a.t < b.t : a.seq < b.seq;
  }
  void sift_up(const Event& e) {
    std::size_t i = heap_.size();
    heap_.push_back(e);
    while (i > 0) {
      const std::size_t p = (i - 1) / kArity;
      if (!before(e, heap_[p])) break;
      heap_[i] = heap_[p];
      i = p;
    }
    heap_[i] = e;
  }
  std::vector<Event> heap_;
  std::uint64_t next_seq_ = 0;
};

}  // namespace infergrid::sim
