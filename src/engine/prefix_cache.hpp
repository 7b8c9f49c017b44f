#pragma once
// Prefix cache keyed by block hashes: LRU over blocks with a capacity, or unlimited. Blocks
// are prefix-chained (a hash names its whole prefix), so a lookup counts the leading run of
// hashes present, as vLLM's and SGLang's caches match prefixes.
#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>

namespace infergrid::engine {

class PrefixCache {
 public:
  // capacity_tokens < 0: unlimited.
  explicit PrefixCache(std::int64_t capacity_tokens) : capacity_(capacity_tokens) {}
  // Leading hashes present, without touching them.
  std::size_t match(std::span<const std::uint64_t> hashes) const;
  // Marks every hash most recently used (inserting the missing ones) and evicts beyond capacity.
  void insert(std::span<const std::uint64_t> hashes, std::int64_t block_tokens);
  std::size_t size() const { return map_.size(); }

 private:
  std::int64_t capacity_;
  std::list<std::uint64_t> lru_;  // front: most recent
  std::unordered_map<std::uint64_t, std::list<std::uint64_t>::iterator> map_;
};

}  // namespace infergrid::engine
