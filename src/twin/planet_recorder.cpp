// The planet twin's recorder: 15-minute buckets, byte counters, requests.csv.
#include "twin/planet_impl.hpp"

namespace infergrid::twin {

void PlanetSim::Impl::Recorder::flush_csv(bool close) {
  if (!csv) return;
  std::fwrite(csv_buf.data(), 1, csv_buf.size(), csv);
  csv_buf.clear();
  if (close) {
    std::fclose(csv);
    csv = nullptr;
  }
}

// One row; times in ms (empty where the request got no answer).
void PlanetSim::Impl::Recorder::row(const Req& r, const char* status, const std::string& reason, double ttft, double tpot, double e2e,
         double queue, double compute, std::int32_t out_tokens) {
  if (!csv) return;
  const auto num = [](double v) { return v < 0 ? std::string() : fmt::format("{:.3f}", v); };
  csv_buf += fmt::format("{},\"{}\",{},{},{},{},{},{:.6f},{},{},{},{:.3f},{:.3f},{},{},{},{}\n", r.gid,
                         sim.w.metros[static_cast<std::size_t>(r.metro)].name,
                         sim.w.workload.classes[static_cast<std::size_t>(r.cls)].name,
                         r.site >= 0 ? sim.w.sites[static_cast<std::size_t>(r.site)].id : "", status, reason, r.attempts,
                         core::to_seconds(r.t_arrive), num(ttft), num(tpot), num(e2e),
                         core::to_ms(r.net_ns) + (ttft >= 0 ? r.one_way_ms : 0), core::to_ms(r.retrieval_ns),
                         num(queue), num(compute), r.req.prompt_tokens, out_tokens);
  if (csv_buf.size() > (1 << 20)) flush_csv();
}

// ---- buckets (time series) ------------------------------------------------------------------
void PlanetSim::Impl::Recorder::new_bucket(Ns t) {
  bucket = Bucket{};
  bucket.t_s = core::to_seconds(t);
  bucket.arrivals.assign(sim.w.workload.classes.size(), 0);
  bucket_start = t;
}

void PlanetSim::Impl::Recorder::close_bucket(Ns t) {
  const double dt = std::max(1e-9, core::to_seconds(t - bucket_start));
  std::vector<double> site_j(sim.w.sites.size(), 0);
  bucket.site_busy_gpu_s.assign(sim.w.sites.size(), 0);
  bucket.site_held_gpu_s.assign(sim.w.sites.size(), 0);
  bucket.site_compute_gpu_s.assign(sim.w.sites.size(), 0);
  for (std::size_t r = 0; r < sim.fleet.replicas.size(); ++r) {
    // Idle energy up to now of every replica serving, starting or draining.
    const Phase ph = sim.fleet.slots[r].phase;
    if (sim.fleet.replica_up[r] || (ph != Phase::kReady && ph != Phase::kOff)) sim.fleet.replicas[r].finish(t);
    const auto& st = sim.fleet.replicas[r].stats();
    const Deploy& d = sim.fleet.deploys[static_cast<std::size_t>(sim.fleet.replica_deploy[r])];
    site_j[static_cast<std::size_t>(d.site)] += st.energy_j - sim.fleet.replica_energy_seen[r];
    sim.fleet.replica_energy_seen[r] = st.energy_j;
    // Busy time counts when an iteration (or a closed-form decode segment) ends.
    bucket.site_busy_gpu_s[static_cast<std::size_t>(d.site)] +=
        static_cast<float>((st.busy_s - sim.fleet.replica_busy_seen[r]) * d.tp);
    sim.fleet.replica_busy_seen[r] = st.busy_s;
    bucket.site_compute_gpu_s[static_cast<std::size_t>(d.site)] +=
        static_cast<float>((st.compute_s - sim.fleet.replica_compute_seen[r]) * d.tp);
    sim.fleet.replica_compute_seen[r] = st.compute_s;
  }
  // Hosts beside the accelerators (Deploy::host_w), for the GPU-seconds held in the bucket.
  for (auto& d : sim.fleet.deploys) {
    sim.fleet.set_powered(d, 0, t);
    const double held = d.gpu_s - d.gpu_s_seen;
    bucket.site_held_gpu_s[static_cast<std::size_t>(d.site)] += static_cast<float>(held);
    site_j[static_cast<std::size_t>(d.site)] += held * d.host_w;
    d.gpu_s_seen = d.gpu_s;
  }
  for (std::size_t s = 0; s < sim.w.sites.size(); ++s) {
    const double kw = site_j[s] * sim.w.sites[s].pue / dt / 1000;
    bucket.facility_kw += kw;
    bucket.carbon_kg += site_j[s] * sim.w.sites[s].pue / 3.6e6 * sim.w.sites[s].carbon_g_per_kwh / 1000;
    auto& st = sim.res.sites[s];
    st.peak_kw = std::max(st.peak_kw, kw);
    if (sim.w.sites[s].power_cap_kw > 0 && kw > sim.w.sites[s].power_cap_kw) ++st.buckets_over_cap;
  }
  sim.fleet.fleet_clock(t);  // the 1-second samples up to the bucket's end
  bucket.link_util.assign(sim.w.links.size(), 0);
  bucket.link_1s.assign(sim.w.links.size(), {0, 0, 0});
  for (std::size_t l = 0; l < sim.w.links.size(); ++l) {
    auto& h = link_hist[l];
    std::uint64_t n = 0;
    for (auto c : h) n += c;
    if (n > 0) {
      const std::array<double, 3> qs{0.5, 0.95, 0.99};
      for (std::size_t k = 0; k < 3; ++k) {
        const auto want = static_cast<std::uint64_t>(std::ceil(qs[k] * static_cast<double>(n)));
        std::uint64_t acc = 0;
        std::size_t b = 0;
        for (; b < h.size(); ++b)
          if ((acc += h[b]) >= want) break;
        bucket.link_1s[l][k] = static_cast<float>(b) / 100;
      }
      sim.res.links[l].peak_p99_1s = std::max<double>(sim.res.links[l].peak_p99_1s, bucket.link_1s[l][2]);
    }
    h.fill(0);
  }
  for (std::size_t l = 0; l < sim.w.links.size(); ++l) {
    const double ua = sim.net.dlink_bucket_bytes[2 * l] / (sim.net.dlink_capacity[2 * l] * dt);
    const double ub = sim.net.dlink_bucket_bytes[2 * l + 1] / (sim.net.dlink_capacity[2 * l + 1] * dt);
    bucket.link_util[l] = static_cast<float>(std::max(ua, ub));
    sim.res.links[l].peak_util = std::max(sim.res.links[l].peak_util, std::max(ua, ub));
    sim.net.dlink_bucket_bytes[2 * l] = sim.net.dlink_bucket_bytes[2 * l + 1] = 0;
  }
  sim.res.buckets.push_back(std::move(bucket));
  new_bucket(t);
}

void PlanetSim::Impl::Recorder::count_kind(const char* kind, double bytes, bool inter_site) {
  sim.res.bytes_by_kind[kind] += bytes;
  if (inter_site) {
    sim.res.inter_site_bytes += bytes;
    bucket.inter_site_bytes += bytes;
  } else {
    sim.res.user_bytes += bytes;
    bucket.user_bytes += bytes;
  }
}

}  // namespace infergrid::twin
