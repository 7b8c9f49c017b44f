#pragma once
// The twin of one site: R replicas of one model behind a router, fed by a request stream,
// advanced by the event kernel.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "control/router.hpp"
#include "engine/replica.hpp"
#include "sim/event_queue.hpp"
#include "sim/metrics.hpp"
#include "workload/request.hpp"

namespace infergrid::sim {

struct SiteConfig {
  int replicas = 1;
  std::string router = "round-robin";
  std::uint64_t seed = 1;
  engine::EngineConfig engine;
};

struct SiteResult {
  std::uint64_t arrived = 0;
  core::Ns end = 0;  // time of the last event
  engine::ReplicaStats totals;
  std::uint64_t events = 0;
};

class SiteSim {
 public:
  // kv_capacity_tokens: per replica.
  SiteSim(std::shared_ptr<const model::StepModel> step, std::int64_t kv_capacity_tokens,
          const SiteConfig& cfg);
  // Runs the stream to the end. `progress` (optional) is called now and then with the
  // source's progress fraction. `keep` (optional, for tests) receives every completion.
  SiteResult run(workload::RequestSource& source, Metrics& metrics,
                 const std::function<void(double)>& progress = {},
                 std::vector<engine::Completion>* keep = nullptr);

 private:
  void sync(std::size_t r);  // re-schedules replica r's event if its time changed
  void dispatch(workload::Request&& req, core::Ns now);
  void drain(std::size_t r, Metrics& metrics, std::vector<engine::Completion>* keep);

  SiteConfig cfg_;
  std::vector<engine::Replica> replicas_;
  std::vector<core::Ns> scheduled_;
  std::vector<std::uint32_t> generation_;
  std::vector<control::ReplicaView> views_;
  std::unique_ptr<control::Router> router_;
  std::deque<workload::Request> held_;  // requests the router holds at the site
  EventQueue queue_;
};

}  // namespace infergrid::sim
