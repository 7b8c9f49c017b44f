#pragma once
// The directed graph traffic engineering works on: nodes with optional coordinates, links with
// capacities and latencies. Readers for Topology Zoo GML and networkx node-link JSON.
#include <cstdint>
#include <string>
#include <vector>

namespace infergrid::te {

struct Node {
  std::int64_t id = 0;  // the file's id
  std::string name;
  double lat = 0, lon = 0;
  bool has_coords = false;
};

struct Link {
  int src = 0, dst = 0;  // node indices
  double capacity = 0;
  double latency_ms = 0;
};

struct Graph {
  std::vector<Node> nodes;
  std::vector<Link> links;
  std::vector<std::vector<int>> out;  // link indices leaving each node
  int index_of(std::int64_t id) const;  // -1 if absent
  int link_between(int src, int dst) const;  // -1 if absent
  void rebuild_adjacency();
};

// Fiber latency: great-circle distance at 5 us/km (light in glass). Links whose ends lack
// coordinates get the median latency of the others (1 ms when none has coordinates).
void assign_latencies(Graph& g);

// Topology Zoo GML: undirected edges become two directed links of `default_capacity` unless an
// edge carries `capacity`; keeps the largest strongly connected component; parallel edges merge.
Graph read_gml(const std::string& path, double default_capacity = 1000);
Graph parse_gml(const std::string& text, const std::string& name, double default_capacity = 1000);

// networkx node-link JSON (TEAL, FIGRET) with a `capacity` per link.
Graph read_node_link_json(const std::string& path);
Graph parse_node_link_json(const std::string& text, const std::string& name);

// By extension: .gml or .json.
Graph read_topology(const std::string& path, double default_capacity = 1000);

// Keeps the largest strongly connected component (Tarjan), renumbering nodes.
Graph largest_scc(const Graph& g);

}  // namespace infergrid::te
