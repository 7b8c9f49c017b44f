#include "engine/prefix_cache.hpp"

#include <algorithm>

namespace infergrid::engine {

std::size_t PrefixCache::match(std::span<const std::uint64_t> hashes) const {
  std::size_t n = 0;
  while (n < hashes.size() && map_.count(hashes[n])) ++n;
  return n;
}

void PrefixCache::insert(std::span<const std::uint64_t> hashes, std::int64_t block_tokens) {
  const std::int64_t max_blocks = capacity_ < 0 ? -1 : capacity_ / std::max<std::int64_t>(block_tokens, 1);
  if (max_blocks == 0) return;
  if (max_blocks > 0 && map_.bucket_count() < static_cast<std::size_t>(max_blocks)) map_.reserve(static_cast<std::size_t>(max_blocks) + 1);
  for (std::uint64_t h : hashes) {
    auto it = map_.find(h);
    if (it != map_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
    } else if (max_blocks > 0 && static_cast<std::int64_t>(map_.size()) >= max_blocks) {
      // Full: the least recent block's list node and map node take the new hash (no allocation).
      auto node = map_.extract(lru_.back());
      lru_.back() = h;
      lru_.splice(lru_.begin(), lru_, std::prev(lru_.end()));
      node.key() = h;
      node.mapped() = lru_.begin();
      map_.insert(std::move(node));
    } else {
      lru_.push_front(h);
      map_.emplace(h, lru_.begin());
    }
  }
  while (max_blocks > 0 && static_cast<std::int64_t>(map_.size()) > max_blocks) {
    map_.erase(lru_.back());
    lru_.pop_back();
  }
}

}  // namespace infergrid::engine
