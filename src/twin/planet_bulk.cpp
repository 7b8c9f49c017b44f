// The planet twin's background bulk copies (world `bulk:`; docs/planet.md "Bulk copies").
//
// Storage replication, backups and dataset or checkpoint moves between neighbouring sites: the
// large copies that B4 carries as elastic traffic under the interactive classes and that SWAN
// ranks below interactive and elastic (strict precedence). They are delay tolerant and take what
// the link leaves, so under the flow network's strict priority they never slow a flow; the twin
// therefore keeps them out of the flow network, as a fluid backlog per directed link that each
// second of the link sampler drains by the bytes the flows left of it. Per second the result is
// exact for strict priority (the copies get the capacity the flows did not use); within a second
// it is not resolved, which the 1-second utilization does not need.
#include <cmath>

#include "twin/planet_impl.hpp"

namespace infergrid::twin {

void PlanetSim::Impl::Bulk::init() {
  const std::size_t D = 2 * sim.w.links.size();
  rate.assign(D, 0);
  next_s.assign(D, 0);
  backlog.assign(D, 0);
  copy_bytes = sim.w.bulk.copy_gb * 1e9 / sim.w.scale;
  for (std::size_t l = 0; l < sim.w.links.size(); ++l) {
    const auto& lk = sim.w.links[l];
    const double load = sim.cfg.bulk_load >= 0 ? sim.cfg.bulk_load : lk.bulk_load >= 0 ? lk.bulk_load : sim.w.bulk.load;
    if (load <= 0) continue;
    on = true;
    for (std::size_t k = 0; k < 2; ++k) {
      const std::size_t dl = 2 * l + k;
      // Offered bytes/s = load x capacity = rate x mean size.
      rate[dl] = load * sim.net.dlink_capacity[dl] / copy_bytes;
      next_s[dl] = -std::log(rng.uniform()) / rate[dl];
    }
  }
}

double PlanetSim::Impl::Bulk::second(int dl, double t_s, double carried, double cap) {
  const auto i = static_cast<std::size_t>(dl);
  if (rate[i] <= 0 && backlog[i] <= 0) return 0;
  while (next_s[i] < t_s) {
    const double b = -std::log(rng.uniform()) * copy_bytes;
    backlog[i] += b;
    sim.res.bulk_offered += b;
    next_s[i] += -std::log(rng.uniform()) / rate[i];
  }
  // What the second's flows left of the link (the sampler's seconds are 1 s long).
  const double room = std::max(0.0, cap - carried);
  const double moved = std::min(backlog[i], room);
  auto& ls = sim.res.links[i / 2];
  if (moved > 0) {
    backlog[i] -= moved;
    // The link's bytes (the sampler's running count of flow bytes is left alone: this second is
    // counted by the caller, and the next second's difference must not see these bytes).
    sim.net.dlink_bucket_bytes[i] += moved;
    (i % 2 == 0 ? ls.bytes_ab : ls.bytes_ba) += moved;
    (i % 2 == 0 ? ls.bulk_ab : ls.bulk_ba) += moved;
    sim.res.bulk_carried += moved;
    sim.res.inter_site_bytes += moved;
    sim.rec.bucket.inter_site_bytes += moved;
  }
  const double nominal = sim.net.dlink_capacity[i];
  if (nominal > 0) ls.bulk_peak_backlog_s = std::max(ls.bulk_peak_backlog_s, backlog[i] / nominal);
  return moved;
}

void PlanetSim::Impl::Bulk::finish() {
  if (!on) return;
  sim.res.bulk_backlog = 0;
  for (double b : backlog) sim.res.bulk_backlog += b;
  sim.res.bytes_by_kind["bulk"] += sim.res.bulk_carried;
}

}  // namespace infergrid::twin
