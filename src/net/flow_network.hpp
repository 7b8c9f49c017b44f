#pragma once
// Flow-level bandwidth sharing: every byte crossing a link belongs to a flow; links are shared
// by strict priority between traffic classes (class 0 first) and max-min fairly within a class
// (progressive filling, as SimGrid's lmm solves it), with an optional rate bound per flow. Rates
// are updated incrementally: a change re-solves only the flows connected to it through shared
// links.
#include <cstdint>
#include <limits>
#include <vector>

namespace infergrid::net {

class FlowNetwork {
 public:
  static constexpr double kUnbounded = std::numeric_limits<double>::infinity();

  int add_link(double capacity);
  // A cut is capacity 0; partial loss lowers it.
  void set_capacity(int link, double capacity);
  int start_flow(std::vector<int> links, int priority_class = 0, double bound = kUnbounded);
  void end_flow(int flow);
  // A new rate bound for a live flow (kUnbounded: none).
  void set_bound(int flow, double bound);
  // Re-solves the components touched since the last update; returns how many flows it re-rated.
  std::size_t update();
  // Re-solves everything (reference for tests and benchmarks).
  void update_all();

  // The flows whose rate the last update() changed, and those it rated for the first time.
  const std::vector<int>& rerated() const { return rerated_; }
  double rate(int flow) const { return flows_[static_cast<std::size_t>(flow)].rate; }
  double load(int link) const;
  double capacity(int link) const { return links_[static_cast<std::size_t>(link)].capacity; }
  std::size_t active_flows() const { return active_; }
  std::size_t link_count() const { return links_.size(); }

 private:
  struct Flow {
    std::vector<int> links;
    int cls = 0;
    double bound = kUnbounded;
    double rate = 0;
    bool alive = false;
    std::uint32_t mark = 0;
    bool fresh = false;  // started since the last update
  };
  struct Link {
    double capacity = 0;
    std::vector<int> flows;  // alive flows crossing it
    std::uint32_t mark = 0;
  };
  void touch(int link) { dirty_.push_back(link); }
  bool fresh(int f) const { return flows_[static_cast<std::size_t>(f)].fresh; }
  // Max-min by class over the given flows and links (a closed component).
  void solve(const std::vector<int>& flows, const std::vector<int>& links);

  std::vector<Flow> flows_;
  std::vector<int> free_flows_;
  std::vector<Link> links_;
  std::vector<int> dirty_;
  std::vector<int> rerated_;
  std::uint32_t epoch_ = 0;
  std::size_t active_ = 0;
  // Scratch for solve(), indexed by link.
  std::vector<double> residual_;
  std::vector<int> unfrozen_on_;
  std::vector<double> old_rate_;
  std::vector<char> frozen_;  // by flow
  struct Share {
    double share;
    int who;  // a link, or -1 - flow for a flow's bound
  };
  std::vector<Share> heap_;
  std::vector<int> classes_;
  std::vector<int> comp_links_, comp_flows_, stack_;  // update()'s scratch
};

}  // namespace infergrid::net
