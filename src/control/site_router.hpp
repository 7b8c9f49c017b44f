#pragma once
// Routing between sites: the planet twin (and, later, the live gateway) offers each request the
// sites that serve its model and are up, as an observed view; a policy picks one. The baselines
// are faithful to the systems they stand for (docs/routing.md):
//   nearest            lowest round trip from the user (anycast / GeoDNS)
//   round-robin        cycles over the candidates
//   least-outstanding  fewest requests outstanding at the site
//   power-of-two       two sites drawn at random, the less loaded per replica wins
//   skyserve           SkyServe's least-load balancer: the replica with fewest in-flight
//                      requests anywhere, whatever the distance
//   llm-d              llm-d's weighted scorer: queue depth (weight 2), KV-cache utilization
//                      (weight 2), prefix-cache affinity (weight 3), each normalized to [0, 1]
//   infergrid          one cost in seconds: the expected TTFT at each site = round trip + the
//                      wait (the requests queued for prefill, or beyond the replicas' batches at
//                      the SLO, served at their sustained rate) + the prefill of what is not
//                      cached there; a farther site wins only when its saving beats the distance
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace infergrid::control {

struct SiteView {
  int site = 0;          // the twin's index
  double rtt_ms = 0;     // user to site, modeled
  int outstanding = 0;   // requests at the site for this model (queued, running, in retrieval)
  int waiting = 0;       // of which not yet running
  int replicas = 0;      // replicas up for this model
  double kv_usage = 0;   // mean over those replicas, [0, 1]
  double prefix_hit = 0; // fraction of the prompt the site is believed to hold cached, [0, 1]
  // From the host's engine model for the model's mix (0: unknown, as at the gateway): requests per
  // second one replica sustains within the TPOT SLO, the batch that takes, and its prefill speed.
  double service_rps = 0;
  int batch_slots = 0;
  double prefill_tok_s = 0;
  double carbon_g_per_kwh = 0;  // the site's grid intensity (operator data; 0: unknown)
};

struct GeoRequest {
  std::uint64_t id = 0;
  int prompt_tokens = 0;
  int priority = 1;
  std::uint64_t session = 0;
};

class SiteRouter {
 public:
  virtual ~SiteRouter() = default;
  // Index into `sites` (never empty), or nothing to reject the request.
  virtual std::optional<std::size_t> pick(const GeoRequest& r, std::span<const SiteView> sites) = 0;
  // What the policy weighs for each candidate, for access logs: the figure it minimizes (RTT,
  // outstanding, load per replica) or, for llm-d, the weighted score it maximizes.
  virtual std::vector<double> scores(std::span<const SiteView> sites) const = 0;
  virtual const char* score_name() const = 0;
};

std::unique_ptr<SiteRouter> make_site_router(const std::string& name, std::uint64_t seed);
std::vector<std::string> site_router_names();

}  // namespace infergrid::control
