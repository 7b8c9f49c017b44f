#pragma once
// Traffic demands between node pairs, with candidate paths.
#include <cstdint>
#include <string>
#include <vector>

#include "te/graph.hpp"

namespace infergrid::te {

struct Demand {
  int src = 0, dst = 0;  // node indices
  double volume = 0;
  int cls = 0;  // traffic class: 0 is served first
};

// An n x n CSV matrix (row = source, column = destination, in node order) or rows
// `src,dst,volume[,class]` of node ids; told apart by the first line. Zero volumes are dropped.
std::vector<Demand> read_demands(const std::string& path, const Graph& g);

// Gravity model: volume(i, j) proportional to w_i w_j with w the node's total out-capacity,
// scaled to `total`; the `max_pairs` largest pairs are kept (0: all).
std::vector<Demand> gravity_demands(const Graph& g, double total, std::size_t max_pairs = 0);

using Path = std::vector<int>;  // link indices, source to destination

// The k lowest-latency loop-free paths (Yen's algorithm); by hop count if `by_hops`.
std::vector<Path> k_shortest_paths(const Graph& g, int src, int dst, int k, bool by_hops = false);

// One path per line: `src dst n0 n1 ... nk` (node ids). Paths of demands absent from the
// file are empty; a path through a missing link is an error naming the line.
std::vector<std::vector<Path>> read_paths(const std::string& path, const Graph& g,
                                          const std::vector<Demand>& demands);

std::vector<std::vector<Path>> compute_paths(const Graph& g, const std::vector<Demand>& demands,
                                             int k, bool by_hops = false);

}  // namespace infergrid::te
