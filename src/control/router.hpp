#pragma once
// Routing policies behind one interface, shared by the twin and (later) the live gateway: each
// reads an observed view of the replicas and returns a decision; none touches sockets or the
// event queue.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/rng.hpp"

namespace infergrid::control {

struct ReplicaView {
  int id = 0;
  int running = 0;
  int waiting = 0;
  int outstanding = 0;  // running + waiting (+ in flight to it)
  double kv_usage = 0;
  int max_num_seqs = 0;
};

struct ClusterView {
  std::span<const ReplicaView> replicas;
};

struct RouteRequest {
  std::uint64_t id = 0;
  int prompt_tokens = 0;
  int priority = 1;
};

class Router {
 public:
  virtual ~Router() = default;
  // The chosen replica's index in the view, or nothing: hold the request until capacity frees.
  virtual std::optional<std::size_t> pick(const RouteRequest& r, const ClusterView& view) = 0;
};

// round-robin, least-outstanding, power-of-two, central-queue (a site-level FCFS queue that
// dispatches only to a replica with a free sequence slot, as M/M/c assumes).
std::unique_ptr<Router> make_router(const std::string& name, std::uint64_t seed);
std::vector<std::string> router_names();

}  // namespace infergrid::control
