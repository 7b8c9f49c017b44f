// The planet twin's recorder: 15-minute buckets, byte counters, requests.csv.
#include "twin/planet_impl.hpp"

namespace infergrid::twin {

void PlanetSim::Impl::flush_csv(bool close) {
  if (!rec.csv) return;
  std::fwrite(rec.csv_buf.data(), 1, rec.csv_buf.size(), rec.csv);
  rec.csv_buf.clear();
  if (close) {
    std::fclose(rec.csv);
    rec.csv = nullptr;
  }
}

// One row; times in ms (empty where the request got no answer).
void PlanetSim::Impl::row(const Req& r, const char* status, const std::string& reason, double ttft, double tpot, double e2e,
         double queue, double compute, std::int32_t out_tokens) {
  if (!rec.csv) return;
  const auto num = [](double v) { return v < 0 ? std::string() : fmt::format("{:.3f}", v); };
  rec.csv_buf += fmt::format("{},\"{}\",{},{},{},{},{},{:.6f},{},{},{},{:.3f},{:.3f},{},{},{},{}\n", r.gid,
                         w.metros[static_cast<std::size_t>(r.metro)].name,
                         w.workload.classes[static_cast<std::size_t>(r.cls)].name,
                         r.site >= 0 ? w.sites[static_cast<std::size_t>(r.site)].id : "", status, reason, r.attempts,
                         core::to_seconds(r.t_arrive), num(ttft), num(tpot), num(e2e),
                         core::to_ms(r.net_ns) + (ttft >= 0 ? r.one_way_ms : 0), core::to_ms(r.retrieval_ns),
                         num(queue), num(compute), r.req.prompt_tokens, out_tokens);
  if (rec.csv_buf.size() > (1 << 20)) flush_csv();
}

// ---- buckets (time series) ------------------------------------------------------------------
void PlanetSim::Impl::new_bucket(Ns t) {
  rec.bucket = Bucket{};
  rec.bucket.t_s = core::to_seconds(t);
  rec.bucket.arrivals.assign(w.workload.classes.size(), 0);
  rec.bucket_start = t;
}

void PlanetSim::Impl::close_bucket(Ns t) {
  const double dt = std::max(1e-9, core::to_seconds(t - rec.bucket_start));
  std::vector<double> site_j(w.sites.size(), 0);
  rec.bucket.site_busy_gpu_s.assign(w.sites.size(), 0);
  rec.bucket.site_held_gpu_s.assign(w.sites.size(), 0);
  rec.bucket.site_compute_gpu_s.assign(w.sites.size(), 0);
  for (std::size_t r = 0; r < fleet.replicas.size(); ++r) {
    // Idle energy up to now of every replica serving, starting or draining.
    const Phase ph = fleet.slots[r].phase;
    if (fleet.replica_up[r] || (ph != Phase::kReady && ph != Phase::kOff)) fleet.replicas[r].finish(t);
    const auto& st = fleet.replicas[r].stats();
    const Deploy& d = fleet.deploys[static_cast<std::size_t>(fleet.replica_deploy[r])];
    site_j[static_cast<std::size_t>(d.site)] += st.energy_j - fleet.replica_energy_seen[r];
    fleet.replica_energy_seen[r] = st.energy_j;
    // Busy time counts when an iteration (or a closed-form decode segment) ends.
    rec.bucket.site_busy_gpu_s[static_cast<std::size_t>(d.site)] +=
        static_cast<float>((st.busy_s - fleet.replica_busy_seen[r]) * d.tp);
    fleet.replica_busy_seen[r] = st.busy_s;
    rec.bucket.site_compute_gpu_s[static_cast<std::size_t>(d.site)] +=
        static_cast<float>((st.compute_s - fleet.replica_compute_seen[r]) * d.tp);
    fleet.replica_compute_seen[r] = st.compute_s;
  }
  // Hosts beside the accelerators (Deploy::host_w), for the GPU-seconds held in the bucket.
  for (auto& d : fleet.deploys) {
    set_powered(d, 0, t);
    const double held = d.gpu_s - d.gpu_s_seen;
    rec.bucket.site_held_gpu_s[static_cast<std::size_t>(d.site)] += static_cast<float>(held);
    site_j[static_cast<std::size_t>(d.site)] += held * d.host_w;
    d.gpu_s_seen = d.gpu_s;
  }
  for (std::size_t s = 0; s < w.sites.size(); ++s) {
    const double kw = site_j[s] * w.sites[s].pue / dt / 1000;
    rec.bucket.facility_kw += kw;
    rec.bucket.carbon_kg += site_j[s] * w.sites[s].pue / 3.6e6 * w.sites[s].carbon_g_per_kwh / 1000;
    auto& st = res.sites[s];
    st.peak_kw = std::max(st.peak_kw, kw);
    if (w.sites[s].power_cap_kw > 0 && kw > w.sites[s].power_cap_kw) ++st.buckets_over_cap;
  }
  fleet_clock(t);  // the 1-second samples up to the rec.bucket's end
  rec.bucket.link_util.assign(w.links.size(), 0);
  rec.bucket.link_1s.assign(w.links.size(), {0, 0, 0});
  for (std::size_t l = 0; l < w.links.size(); ++l) {
    auto& h = rec.link_hist[l];
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
        rec.bucket.link_1s[l][k] = static_cast<float>(b) / 100;
      }
      res.links[l].peak_p99_1s = std::max<double>(res.links[l].peak_p99_1s, rec.bucket.link_1s[l][2]);
    }
    h.fill(0);
  }
  for (std::size_t l = 0; l < w.links.size(); ++l) {
    const double ua = net.dlink_bucket_bytes[2 * l] / (net.dlink_capacity[2 * l] * dt);
    const double ub = net.dlink_bucket_bytes[2 * l + 1] / (net.dlink_capacity[2 * l + 1] * dt);
    rec.bucket.link_util[l] = static_cast<float>(std::max(ua, ub));
    res.links[l].peak_util = std::max(res.links[l].peak_util, std::max(ua, ub));
    net.dlink_bucket_bytes[2 * l] = net.dlink_bucket_bytes[2 * l + 1] = 0;
  }
  res.buckets.push_back(std::move(rec.bucket));
  new_bucket(t);
}

void PlanetSim::Impl::count_kind(const char* kind, double bytes, bool inter_site) {
  res.bytes_by_kind[kind] += bytes;
  if (inter_site) {
    res.inter_site_bytes += bytes;
    rec.bucket.inter_site_bytes += bytes;
  } else {
    res.user_bytes += bytes;
    rec.bucket.user_bytes += bytes;
  }
}

}  // namespace infergrid::twin
