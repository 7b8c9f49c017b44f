#pragma once
// The gateway as a control host (the twin is the other): every controller period it observes
// its backends as scraped (the same FleetView the twin builds), asks the configured controller
// (src/control) and carries out what a gateway can: shed levels per class, routing weights per
// site, and scale decisions where the site has a pool (its orchestrator starts and drains replica
// processes). Power-cap and bandwidth decisions, and scale decisions for a site without a pool,
// are counted (infergrid_gateway_control_decisions_total{applied="false"}), not carried out.
#include <array>
#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "control/fleet.hpp"

namespace infergrid::serve {

class Gateway;
struct Snapshot;

class GatewayControl final : public control::ControlHost {
 public:
  explicit GatewayControl(Gateway& gw);
  void start();  // arms the period timer (nothing for a controller without a period)
  control::FleetView observe() override;
  void apply(const control::Decisions& d) override;
  // Read on the request path.
  double shed_at(int cls, double configured) const;
  bool site_excluded(int site) const { return weight_[static_cast<std::size_t>(site)].load() <= 0; }
  void routed(int site, const std::string& model);
  std::string metrics() const;

 private:
  void tick();
  // Carries the controller's schedules to the engines that take them (infergrid engines report
  // theirs in /metrics; POST /admin/schedule sets them): every tick, each available backend of a
  // deployment whose scraped settings differ from the last decision gets them, so replicas started
  // later and engines restarted converge too. vLLM and SGLang report none: counted not applied.
  void reconcile_schedules();
  struct Wanted {
    control::Decisions::Schedule s;
    bool counted = false;  // its backends that cannot take it were counted once
  };
  std::map<std::size_t, Wanted> schedules_;  // per deployment, the last decision
  std::map<std::size_t, std::chrono::steady_clock::time_point> posting_;  // backend -> POST under way since
  Gateway& gw_;
  std::unique_ptr<control::Controller> controller_;
  std::unique_ptr<boost::asio::steady_timer> timer_;
  std::vector<std::pair<int, std::string>> deps_;  // (site, model) with a backend serving it
  std::map<std::pair<int, std::string>, std::size_t> dep_index_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> routed_;
  std::unique_ptr<std::atomic<double>[]> weight_;
  std::array<std::atomic<double>, control::kPriorities> shed_{};
  std::chrono::steady_clock::time_point since_;
  std::mutex mu_;  // observe/apply from the timer; tests call them directly
  std::atomic<std::uint64_t> ticks_{0};
  std::array<std::atomic<std::uint64_t>, 6> applied_{}, unapplied_{};  // scale, power, pair, shed, route, schedule
};

}  // namespace infergrid::serve
