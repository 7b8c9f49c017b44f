// The gateway's /metrics: requests by site, class and outcome; backends as scraped and as seen;
// tenants; rate limits; the access log; the hosted controller.
#include <fmt/format.h>

#include "serve/gateway_state.hpp"

namespace infergrid::serve {

std::string Gateway::metrics() {
  std::string out;
  auto label = [](const std::string& v) {  // a label value, escaped as the text format wants
    std::string o;
    for (char c : v) {
      if (c == '\\' || c == '"') o += '\\';
      if (c == '\n') {
        o += "\\n";
        continue;
      }
      o += c;
    }
    return o;
  };
  out += "# HELP infergrid_gateway_requests_total Requests by site, class and outcome.\n";
  out += "# TYPE infergrid_gateway_requests_total counter\n";
  for (std::size_t s = 0; s <= cfg_.sites.size(); ++s)
    for (int c = 0; c < 3; ++c)
      for (int o = 0; o < kOutcomes; ++o) {
        const auto v = counts_[s * 3 * kOutcomes + static_cast<std::size_t>(c) * kOutcomes + static_cast<std::size_t>(o)].load();
        if (v == 0) continue;
        out += fmt::format("infergrid_gateway_requests_total{{site=\"{}\",class=\"{}\",outcome=\"{}\"}} {}\n",
                           s < cfg_.sites.size() ? label(cfg_.sites[s].name) : "none", kClassNames[c], kOutcomeNames[o], v);
      }
  const auto snap = snapshot();
  auto per_backend = [&](const char* name, const char* type, const char* help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (std::size_t i = 0; i < flat_.size(); ++i)
      out += fmt::format("{}{{site=\"{}\",backend=\"{}\"}} {}\n", name, label(cfg_.sites[static_cast<std::size_t>(flat_[i].first)].name),
                         label(backend(i).url), value(i));
  };
  per_backend("infergrid_gateway_backend_inflight", "gauge", "Requests the gateway has in flight to each backend.",
              [&](std::size_t i) { return live_[i].inflight.load(); });
  per_backend("infergrid_gateway_backend_up", "gauge", "Whether the backend is scraped and not ejected.",
              [&](std::size_t i) { return snap->backends[i].up && available(i) ? 1 : 0; });
  per_backend("infergrid_gateway_backend_ejected", "gauge", "Whether the backend is ejected by request outcomes now.",
              [&](std::size_t i) { return ejected(i) ? 1 : 0; });
  out += "# HELP infergrid_gateway_backend_ejections_total Ejections by request outcome: consecutive failures, or tries stalled with no progress.\n";
  out += "# TYPE infergrid_gateway_backend_ejections_total counter\n";
  for (std::size_t i = 0; i < flat_.size(); ++i)
    for (int r = 0; r < 2; ++r)
      out += fmt::format("infergrid_gateway_backend_ejections_total{{site=\"{}\",backend=\"{}\",reason=\"{}\"}} {}\n",
                         label(cfg_.sites[static_cast<std::size_t>(flat_[i].first)].name), label(backend(i).url),
                         r == 0 ? "failures" : "stalled", (r == 0 ? live_[i].ejected_failures : live_[i].ejected_stalls).load());
  out += control_->metrics();
  out += orch_->metrics();
  out += "# HELP infergrid_gateway_unauthorized_total Requests refused for a missing or unknown API key.\n";
  out += fmt::format("# TYPE infergrid_gateway_unauthorized_total counter\ninfergrid_gateway_unauthorized_total {}\n", unauthorized_.load());
  if (!cfg_.tenants.empty()) {
    auto per_tenant = [&](const char* name, const char* help, auto value) {
      out += fmt::format("# HELP {} {}\n# TYPE {} counter\n", name, help, name);
      for (std::size_t t = 0; t < cfg_.tenants.size(); ++t)
        out += fmt::format("{}{{tenant=\"{}\"}} {}\n", name, label(cfg_.tenants[t].name), value(tenant_live_[t]));
    };
    per_tenant("infergrid_gateway_tenant_requests_total", "Authenticated requests by tenant.",
               [](const TenantLive& l) { return l.requests.load(); });
    per_tenant("infergrid_gateway_tenant_rate_limited_total", "Requests refused by the tenant's requests or tokens limit.",
               [](const TenantLive& l) { return l.rate_limited.load(); });
    per_tenant("infergrid_gateway_tenant_downgraded_total", "Requests that claimed a class above the tenant's entitlement.",
               [](const TenantLive& l) { return l.downgraded.load(); });
    per_tenant("infergrid_gateway_tenant_tokens_total", "Prompt and completion tokens served to the tenant.",
               [](const TenantLive& l) { return l.tokens.load(); });
  }
  out += "# HELP infergrid_gateway_ratelimit_shared Whether tenant counters are shared through Redis now (0: local limits).\n";
  out += fmt::format("# TYPE infergrid_gateway_ratelimit_shared gauge\ninfergrid_gateway_ratelimit_shared {}\n",
                     limiter_->redis_configured() && limiter_->shared() ? 1 : 0);
  out += "# HELP infergrid_gateway_ratelimit_redis_errors_total Redis calls that failed (each fell back to local counters).\n";
  out += fmt::format("# TYPE infergrid_gateway_ratelimit_redis_errors_total counter\ninfergrid_gateway_ratelimit_redis_errors_total {}\n",
                     limiter_->redis_errors());
  out += "# HELP infergrid_gateway_access_log_rotations_total Access-log rotations done by this process.\n";
  out += fmt::format("# TYPE infergrid_gateway_access_log_rotations_total counter\ninfergrid_gateway_access_log_rotations_total {}\n",
                     log_.rotations());
  if (server_) server_->write(out, "infergrid_gateway_");
  std::lock_guard<std::mutex> lock(hist_mu_);
  for (int c = 0; c < 3; ++c)
    ttft_[static_cast<std::size_t>(c)].write(out, "infergrid_gateway_ttft_seconds", "Time to the first byte of the answer, by class.",
                                             fmt::format("class=\"{}\"", kClassNames[c]), c == 0);
  return out;
}

}  // namespace infergrid::serve
