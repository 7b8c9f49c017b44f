#pragma once
// Reading a backend's server-sent events as the gateway relays them: bytes in, whole events out,
// each checked (OpenAI streams carry `data: JSON` events and a final `data: [DONE]`; comments
// and other fields pass). The gateway relays only whole events, so an error it must add
// mid-stream starts on an event boundary.
#include <cstdint>
#include <string>
#include <string_view>

namespace infergrid::serve {

class SseReader {
 public:
  explicit SseReader(std::size_t max_event_bytes = 1 << 20) : max_(max_event_bytes) {}
  // Appends `data`; moves every complete, valid event into `out` (with its blank line). False
  // (with error()) on an invalid event or one longer than the limit; nothing after it is given.
  bool feed(std::string_view data, std::string& out);
  const std::string& error() const { return error_; }
  bool done() const { return done_; }             // `data: [DONE]` seen
  bool pending() const { return !buf_.empty(); }  // a partial event is held
  std::int64_t events() const { return events_; }
  // Completion tokens seen: the last usage's completion_tokens, else one per content delta.
  std::int64_t completion_tokens() const { return usage_completion_ >= 0 ? usage_completion_ : deltas_; }
  std::int64_t usage_prompt_tokens() const { return usage_prompt_; }  // -1: no usage seen

 private:
  bool check(std::string_view event);
  std::size_t max_;
  std::string buf_, error_;
  bool done_ = false;
  std::int64_t events_ = 0, deltas_ = 0, usage_completion_ = -1, usage_prompt_ = -1;
};

}  // namespace infergrid::serve
