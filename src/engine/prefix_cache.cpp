#include "engine/prefix_cache.hpp"

#include <algorithm>

namespace infergrid::engine {

namespace {
// Keys may be small integers (a trace's block ids): mixed before they pick a slot (splitmix64).
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}
}  // namespace

std::size_t PrefixCache::home(std::uint64_t key) const { return mix(key) & (slots_.size() - 1); }

std::uint32_t PrefixCache::find(std::uint64_t key) const {
  if (slots_.empty()) return kNone;
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = home(key);; i = (i + 1) & mask) {
    const std::uint32_t n = slots_[i];
    if (n == kNone) return kNone;
    if (nodes_[n].key == key) return n;
  }
}

void PrefixCache::table_put(std::uint32_t node) {
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = home(nodes_[node].key);
  while (slots_[i] != kNone) i = (i + 1) & mask;
  slots_[i] = node;
}

void PrefixCache::table_erase(std::uint64_t key) {
  const std::size_t mask = slots_.size() - 1;
  std::size_t i = home(key);
  while (nodes_[slots_[i]].key != key) i = (i + 1) & mask;  // present: the caller found it
  // Backward shift: later entries of the run move up unless their home lies after the hole.
  for (std::size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
    if (slots_[j] == kNone) break;
    const std::size_t h = home(nodes_[slots_[j]].key);
    const bool movable = i <= j ? (h <= i || h > j) : (h <= i && h > j);
    if (movable) {
      slots_[i] = slots_[j];
      i = j;
    }
  }
  slots_[i] = kNone;
}

void PrefixCache::grow(std::size_t min_slots) {
  std::size_t n = std::max<std::size_t>(16, slots_.size());
  while (n < min_slots) n *= 2;
  if (n == slots_.size()) return;
  slots_.assign(n, kNone);
  for (std::uint32_t k = head_; k != kNone; k = nodes_[k].next) table_put(k);
}

void PrefixCache::unlink(std::uint32_t n) {
  Node& x = nodes_[n];
  (x.prev == kNone ? head_ : nodes_[x.prev].next) = x.next;
  (x.next == kNone ? tail_ : nodes_[x.next].prev) = x.prev;
  x.prev = x.next = kNone;
}

void PrefixCache::push_front(std::uint32_t n) {
  nodes_[n].prev = kNone;
  nodes_[n].next = head_;
  if (head_ != kNone) nodes_[head_].prev = n;
  head_ = n;
  if (tail_ == kNone) tail_ = n;
}

std::size_t PrefixCache::match(std::span<const std::uint64_t> hashes) const {
  std::size_t n = 0;
  while (n < hashes.size() && find(hashes[n]) != kNone) ++n;
  return n;
}

void PrefixCache::insert(std::span<const std::uint64_t> hashes, std::int64_t block_tokens,
                         std::vector<std::uint64_t>* evicted) {
  const std::int64_t max_blocks = capacity_ < 0 ? -1 : capacity_ / std::max<std::int64_t>(block_tokens, 1);
  if (max_blocks == 0) return;
  for (std::uint64_t h : hashes) {
    const std::uint32_t at = find(h);
    if (at != kNone) {
      if (at != head_) {
        unlink(at);
        push_front(at);
      }
      continue;
    }
    std::uint32_t n;
    if (max_blocks > 0 && static_cast<std::int64_t>(size_) >= max_blocks) {
      n = tail_;  // full: the least recent block's node takes the new hash
      if (evicted) evicted->push_back(nodes_[n].key);
      table_erase(nodes_[n].key);
      unlink(n);
    } else {
      if (2 * (size_ + 1) > slots_.size()) grow(2 * (size_ + 1));
      if (!free_.empty()) {
        n = free_.back();
        free_.pop_back();
      } else {
        n = static_cast<std::uint32_t>(nodes_.size());
        nodes_.push_back({});
      }
      ++size_;
    }
    nodes_[n].key = h;
    table_put(n);
    push_front(n);
  }
  // A smaller capacity in blocks (a larger block size than before): the least recent go.
  while (max_blocks > 0 && static_cast<std::int64_t>(size_) > max_blocks) {
    const std::uint32_t lru = tail_;
    if (evicted) evicted->push_back(nodes_[lru].key);
    table_erase(nodes_[lru].key);
    unlink(lru);
    free_.push_back(lru);
    --size_;
  }
}

}  // namespace infergrid::engine
