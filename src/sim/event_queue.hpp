#pragma once
// The deterministic event queue: events ordered by (time, sequence number), so equal times
// break ties in scheduling order and a seed fixes the run byte for byte.
#include <cstdint>
#include <queue>
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

class EventQueue {
 public:
  void push(core::Ns t, std::int32_t target, std::uint32_t generation = 0) {
    heap_.push(Event{t, next_seq_++, target, generation, 0});
  }
  // A typed event: `kind` is the host's enum, `target` and `generation` what that kind needs.
  template <class Kind>
  void push_kind(core::Ns t, Kind kind, std::int32_t target = 0, std::uint32_t generation = 0) {
    heap_.push(Event{t, next_seq_++, target, generation, static_cast<std::uint8_t>(kind)});
  }
  bool empty() const { return heap_.empty(); }
  const Event& top() const { return heap_.top(); }
  Event pop() {
    Event e = heap_.top();
    heap_.pop();
    return e;
  }
  std::size_t size() const { return heap_.size(); }

 private:
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.t != b.t ? a.t > b.t : a.seq > b.seq;
    }
  };
  std::priority_queue<Event, std::vector<Event>, Later> heap_;
  std::uint64_t next_seq_ = 0;
};

}  // namespace infergrid::sim
