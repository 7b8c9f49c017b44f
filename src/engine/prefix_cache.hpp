#pragma once
// Prefix cache keyed by block hashes: LRU over blocks with a capacity, or unlimited. Blocks
// are prefix-chained (a hash names its whole prefix), so a lookup counts the leading run of
// hashes present, as vLLM's and SGLang's caches match prefixes.
//
// On the twin's hot path (every request inserts and matches its blocks): an open-addressing
// table (linear probing, deletion by backward shift) of indices into a pool of nodes that form
// the LRU list, so that a lookup is one probe run in a flat array and nothing is allocated once
// the cache is full.
#include <cstdint>
#include <span>
#include <vector>

namespace infergrid::engine {

class PrefixCache {
 public:
  // capacity_tokens < 0: unlimited.
  explicit PrefixCache(std::int64_t capacity_tokens) : capacity_(capacity_tokens) {}
  // Leading hashes present, without touching them.
  std::size_t match(std::span<const std::uint64_t> hashes) const;
  // Marks every hash most recently used (inserting the missing ones) and evicts beyond capacity;
  // what it evicts is appended to `evicted` when given (a lower tier takes it).
  void insert(std::span<const std::uint64_t> hashes, std::int64_t block_tokens,
              std::vector<std::uint64_t>* evicted = nullptr);
  std::size_t size() const { return size_; }

 private:
  static constexpr std::uint32_t kNone = 0xFFFFFFFFu;
  struct Node {
    std::uint64_t key = 0;
    std::uint32_t prev = kNone, next = kNone;  // towards the most / least recent
  };
  std::size_t home(std::uint64_t key) const;
  std::uint32_t find(std::uint64_t key) const;  // node index, or kNone
  void table_put(std::uint32_t node);
  void table_erase(std::uint64_t key);
  void grow(std::size_t min_slots);
  void unlink(std::uint32_t n);
  void push_front(std::uint32_t n);

  std::int64_t capacity_;
  std::vector<std::uint32_t> slots_;  // node indices, kNone for empty; a power of two in size
  std::vector<Node> nodes_;
  std::vector<std::uint32_t> free_;  // nodes evicted without reuse
  std::uint32_t head_ = kNone, tail_ = kNone;
  std::size_t size_ = 0;
};

}  // namespace infergrid::engine
