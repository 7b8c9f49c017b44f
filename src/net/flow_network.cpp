#include "net/flow_network.hpp"

#include <algorithm>
#include <cmath>

namespace infergrid::net {

int FlowNetwork::add_link(double capacity) {
  links_.push_back(Link{std::max(0.0, capacity), {}, 0});
  residual_.push_back(0);
  unfrozen_on_.push_back(0);
  return static_cast<int>(links_.size() - 1);
}

void FlowNetwork::set_capacity(int link, double capacity) {
  links_[static_cast<std::size_t>(link)].capacity = std::max(0.0, capacity);
  touch(link);
}

int FlowNetwork::start_flow(std::vector<int> links, int priority_class, double bound) {
  int id;
  if (!free_flows_.empty()) {
    id = free_flows_.back();
    free_flows_.pop_back();
  } else {
    id = static_cast<int>(flows_.size());
    flows_.emplace_back();
  }
  Flow& f = flows_[static_cast<std::size_t>(id)];
  f = Flow{};
  f.links = std::move(links);
  f.cls = priority_class;
  f.bound = bound;
  f.alive = true;
  f.fresh = true;
  for (int l : f.links) {
    links_[static_cast<std::size_t>(l)].flows.push_back(id);
    touch(l);
  }
  ++active_;
  return id;
}

void FlowNetwork::end_flow(int id) {
  Flow& f = flows_[static_cast<std::size_t>(id)];
  if (!f.alive) return;
  for (int l : f.links) {
    auto& v = links_[static_cast<std::size_t>(l)].flows;
    v.erase(std::find(v.begin(), v.end(), id));
    touch(l);
  }
  f.alive = false;
  f.rate = 0;
  free_flows_.push_back(id);
  --active_;
}

void FlowNetwork::set_bound(int id, double bound) {
  Flow& f = flows_[static_cast<std::size_t>(id)];
  if (!f.alive || f.bound == bound) return;
  f.bound = bound;
  for (int l : f.links) touch(l);
}

double FlowNetwork::load(int link) const {
  double s = 0;
  for (int f : links_[static_cast<std::size_t>(link)].flows) s += flows_[static_cast<std::size_t>(f)].rate;
  return s;
}

std::size_t FlowNetwork::update() {
  rerated_.clear();
  if (dirty_.empty()) return 0;
  ++epoch_;
  // The component of the touched links: links and flows reachable through shared flows.
  auto& links = comp_links_;
  auto& flows = comp_flows_;
  auto& stack = stack_;
  links.clear();
  flows.clear();
  stack.clear();
  for (int l : dirty_)
    if (links_[static_cast<std::size_t>(l)].mark != epoch_) {
      links_[static_cast<std::size_t>(l)].mark = epoch_;
      stack.push_back(l);
    }
  dirty_.clear();
  while (!stack.empty()) {
    const int l = stack.back();
    stack.pop_back();
    links.push_back(l);
    for (int f : links_[static_cast<std::size_t>(l)].flows) {
      Flow& fl = flows_[static_cast<std::size_t>(f)];
      if (fl.mark == epoch_) continue;
      fl.mark = epoch_;
      flows.push_back(f);
      for (int m : fl.links)
        if (links_[static_cast<std::size_t>(m)].mark != epoch_) {
          links_[static_cast<std::size_t>(m)].mark = epoch_;
          stack.push_back(m);
        }
    }
  }
  old_rate_.resize(flows.size());
  for (std::size_t i = 0; i < flows.size(); ++i) old_rate_[i] = flows_[static_cast<std::size_t>(flows[i])].rate;
  solve(flows, links);
  // Report the flows whose rate moved (a new flow starts at 0 and always does, unless it stays
  // at 0: then no completion is due either).
  for (std::size_t i = 0; i < flows.size(); ++i)
    if (flows_[static_cast<std::size_t>(flows[i])].rate != old_rate_[i] || fresh(flows[i])) rerated_.push_back(flows[i]);
  for (int f : flows) flows_[static_cast<std::size_t>(f)].fresh = false;
  return flows.size();
}

void FlowNetwork::update_all() {
  dirty_.clear();
  std::vector<int> links(links_.size()), flows;
  for (std::size_t l = 0; l < links_.size(); ++l) links[l] = static_cast<int>(l);
  for (std::size_t f = 0; f < flows_.size(); ++f)
    if (flows_[f].alive) flows.push_back(static_cast<int>(f));
  solve(flows, links);
}

void FlowNetwork::solve(const std::vector<int>& flows, const std::vector<int>& links) {
  // Water-filling by bottleneck, class by class: the link with the smallest fair share
  // (residual capacity over its unfrozen flows) fixes the rate of every unfrozen flow on it;
  // those flows leave, the links they cross lose that rate, and the next smallest share goes.
  // A flow's bound acts as a link of its own. Freezing a flow at the smallest share never lowers
  // another link's share, so the heap holds lower bounds, one entry per link, refreshed lazily
  // when popped: O((L + F x path) log L) per class, without an entry per touch.
  for (int l : links) residual_[static_cast<std::size_t>(l)] = links_[static_cast<std::size_t>(l)].capacity;
  if (frozen_.size() < flows_.size()) frozen_.resize(flows_.size(), 0);
  classes_.clear();
  for (int f : flows) classes_.push_back(flows_[static_cast<std::size_t>(f)].cls);
  std::sort(classes_.begin(), classes_.end());
  classes_.erase(std::unique(classes_.begin(), classes_.end()), classes_.end());
  auto& heap = heap_;
  const auto later = [](const Share& a, const Share& b) { return a.share != b.share ? a.share > b.share : a.who > b.who; };
  auto push = [&](Share x) {
    heap.push_back(x);
    std::push_heap(heap.begin(), heap.end(), later);
  };
  auto link_share = [&](std::size_t li) { return std::max(0.0, residual_[li]) / unfrozen_on_[li]; };
  for (int cls : classes_) {
    heap.clear();
    std::size_t left = 0;
    for (int l : links) unfrozen_on_[static_cast<std::size_t>(l)] = 0;
    for (int f : flows) {
      Flow& fl = flows_[static_cast<std::size_t>(f)];
      if (fl.cls != cls) continue;
      fl.rate = 0;
      frozen_[static_cast<std::size_t>(f)] = 0;
      ++left;
      for (int l : fl.links) ++unfrozen_on_[static_cast<std::size_t>(l)];
      if (fl.bound < kUnbounded) heap.push_back({fl.bound, -1 - f});
    }
    for (int l : links)
      if (unfrozen_on_[static_cast<std::size_t>(l)] > 0) heap.push_back({link_share(static_cast<std::size_t>(l)), l});
    std::make_heap(heap.begin(), heap.end(), later);
    while (left > 0 && !heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), later);
      const Share top = heap.back();
      heap.pop_back();
      if (top.who < 0) {
        const int f = -1 - top.who;
        if (frozen_[static_cast<std::size_t>(f)]) continue;
        Flow& fl = flows_[static_cast<std::size_t>(f)];
        frozen_[static_cast<std::size_t>(f)] = 1;
        fl.rate = top.share;
        --left;
        for (int l : fl.links) {
          residual_[static_cast<std::size_t>(l)] -= top.share;
          --unfrozen_on_[static_cast<std::size_t>(l)];
        }
        continue;
      }
      const auto li = static_cast<std::size_t>(top.who);
      if (unfrozen_on_[li] == 0) continue;
      const double share = link_share(li);
      if (share > top.share) {  // grew since it was pushed: back in line
        push({share, top.who});
        continue;
      }
      for (int f : links_[li].flows) {
        Flow& fl = flows_[static_cast<std::size_t>(f)];
        if (fl.cls != cls || frozen_[static_cast<std::size_t>(f)]) continue;
        frozen_[static_cast<std::size_t>(f)] = 1;
        fl.rate = share;
        --left;
        for (int l : fl.links) {
          residual_[static_cast<std::size_t>(l)] -= share;
          --unfrozen_on_[static_cast<std::size_t>(l)];
        }
      }
    }
    // Flows over no link and without a bound: nothing limits them.
    if (left > 0)
      for (int f : flows) {
        Flow& fl = flows_[static_cast<std::size_t>(f)];
        if (fl.cls == cls && !frozen_[static_cast<std::size_t>(f)]) fl.rate = kUnbounded, frozen_[static_cast<std::size_t>(f)] = 1;
      }
  }
}

}  // namespace infergrid::net
