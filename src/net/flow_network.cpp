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
  std::vector<int> links, flows, stack;
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
  solve(flows, links);
  rerated_ = std::move(flows);
  return rerated_.size();
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
  for (int l : links) residual_[static_cast<std::size_t>(l)] = links_[static_cast<std::size_t>(l)].capacity;
  std::vector<int> classes;
  for (int f : flows) classes.push_back(flows_[static_cast<std::size_t>(f)].cls);
  std::sort(classes.begin(), classes.end());
  classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
  std::vector<int> unfrozen;
  for (int cls : classes) {
    // Progressive filling: the unfrozen flows of this class rise together; a link that runs
    // out freezes its flows, a flow that reaches its bound freezes alone.
    unfrozen.clear();
    for (int f : flows)
      if (flows_[static_cast<std::size_t>(f)].cls == cls) {
        unfrozen.push_back(f);
        flows_[static_cast<std::size_t>(f)].rate = 0;
      }
    for (int l : links) unfrozen_on_[static_cast<std::size_t>(l)] = 0;
    for (int f : unfrozen)
      for (int l : flows_[static_cast<std::size_t>(f)].links) ++unfrozen_on_[static_cast<std::size_t>(l)];
    double level = 0;
    while (!unfrozen.empty()) {
      double step = kUnbounded;
      for (int l : links) {
        const int n = unfrozen_on_[static_cast<std::size_t>(l)];
        if (n > 0) step = std::min(step, std::max(0.0, residual_[static_cast<std::size_t>(l)]) / n);
      }
      for (int f : unfrozen) step = std::min(step, flows_[static_cast<std::size_t>(f)].bound - level);
      if (!std::isfinite(step)) {  // flows over no link and without bound: nothing limits them
        for (int f : unfrozen) flows_[static_cast<std::size_t>(f)].rate = level;
        break;
      }
      level += step;
      for (int l : links)
        residual_[static_cast<std::size_t>(l)] -= step * unfrozen_on_[static_cast<std::size_t>(l)];
      std::vector<int> next;
      for (int f : unfrozen) {
        Flow& fl = flows_[static_cast<std::size_t>(f)];
        fl.rate = level;
        bool frozen = fl.bound - level <= 1e-12 * (1 + level);
        for (int l : fl.links) {
          const double cap = links_[static_cast<std::size_t>(l)].capacity;
          if (residual_[static_cast<std::size_t>(l)] <= 1e-12 * (1 + cap)) frozen = true;
        }
        if (frozen) {
          for (int l : fl.links) --unfrozen_on_[static_cast<std::size_t>(l)];
        } else {
          next.push_back(f);
        }
      }
      unfrozen = std::move(next);
    }
  }
}

}  // namespace infergrid::net
