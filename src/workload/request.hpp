#pragma once
// The request, as every module sees it.
#include <cstdint>
#include <vector>

#include "core/priority.hpp"
#include "core/units.hpp"

namespace infergrid::workload {

using core::Priority;

struct Request {
  std::uint64_t id = 0;
  core::Ns arrival = 0;
  std::int32_t prompt_tokens = 1;
  std::int32_t output_tokens = 1;
  std::int16_t images = 0;
  Priority priority = Priority::kInteractive;
  // Prefix-chained hashes of the prompt's blocks of hash_block_tokens tokens (Mooncake's
  // hash_ids): equal hashes at equal positions mean equal prefixes.
  std::vector<std::uint64_t> block_hashes;
  std::int32_t hash_block_tokens = 0;
  // Prompt tokens whose KV arrives with the request (prefilled elsewhere: disaggregated serving);
  // the engine allocates their blocks and computes only what is left (at least the last token).
  std::int32_t kv_ready_tokens = 0;
};

// A stream of requests in arrival order; traces and generators both are one.
class RequestSource {
 public:
  virtual ~RequestSource() = default;
  virtual bool next(Request& out) = 0;
  // Fraction of the input consumed, for progress bars; negative when unknown.
  virtual double progress() const { return -1; }
};

}  // namespace infergrid::workload
