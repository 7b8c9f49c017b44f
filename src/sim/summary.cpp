#include "sim/summary.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

namespace infergrid::sim {

nlohmann::ordered_json sketch_json(const core::QuantileSketch& s, bool with_count) {
  nlohmann::ordered_json j;
  if (with_count) j["count"] = s.count();
  j["mean"] = s.mean();
  j["p50"] = s.quantile(0.5);
  j["p90"] = s.quantile(0.9);
  j["p99"] = s.quantile(0.99);
  j["max"] = s.max();
  return j;
}

namespace {
nlohmann::ordered_json dist(const core::QuantileSketch& s) { return sketch_json(s); }
double safe_div(double a, double b) { return b > 0 ? a / b : 0; }
}  // namespace

std::string summary_json(const RunInfo& info, const SiteResult& r, const Metrics& m) {
  nlohmann::ordered_json j;
  nlohmann::ordered_json cfg;
  for (const auto& [k, v] : info.config) cfg[k] = v;
  j["config"] = cfg;
  const double duration = core::to_seconds(r.end);
  j["requests"] = r.arrived;
  j["completed"] = m.completed();
  j["rejected"] = m.rejected();
  j["duration_s"] = duration;
  j["ttft_ms"] = dist(m.ttft());
  j["tpot_ms"] = dist(m.tpot());
  j["e2e_ms"] = dist(m.e2e());
  j["queue_ms"] = dist(m.queue());
  j["output_tokens"] = m.output_tokens();
  j["output_tokens_per_s"] = safe_div(double(m.output_tokens()), duration);
  j["slo"] = {{"ttft_ms", m.slo().ttft_ms}, {"tpot_ms", m.slo().tpot_ms}};
  j["slo_attainment"] = safe_div(double(m.met_slo()), double(m.completed()));
  j["goodput_rps"] = safe_div(double(m.met_slo()), duration);
  nlohmann::ordered_json pc;
  pc["enabled"] = info.prefix_caching;
  pc["block_hit_rate"] =
      safe_div(double(r.totals.prefix_hit_blocks), double(r.totals.prefix_lookup_blocks));
  pc["token_hit_rate"] = safe_div(double(r.totals.cached_tokens), double(r.totals.prompt_tokens));
  j["prefix_cache"] = pc;
  j["preemptions"] = r.totals.preemptions;
  j["energy_j"] = r.totals.energy_j;
  j["j_per_output_token"] = safe_div(r.totals.energy_j, double(m.output_tokens()));
  // Per request: its share of the busy iterations (idle power is the site's, not a request's).
  j["request_energy_j"] = dist(m.request_energy());
  j["iterations"] = r.totals.iterations;
  j["decode_segments"] = r.totals.segments;
  return j.dump(2) + "\n";
}

std::string summary_text(const SiteResult& r, const Metrics& m) {
  const double duration = core::to_seconds(r.end);
  auto line = [](const char* name, const core::QuantileSketch& s) {
    return fmt::format("  {:<6} mean {:>10.1f}  p50 {:>10.1f}  p90 {:>10.1f}  p99 {:>10.1f}\n", name,
                       s.mean(), s.quantile(0.5), s.quantile(0.9), s.quantile(0.99));
  };
  std::string s = fmt::format(
      "requests {}  completed {}  rejected {}  simulated {:.1f} s\n", r.arrived, m.completed(),
      m.rejected(), duration);
  s += "latency (ms):\n";
  s += line("TTFT", m.ttft());
  s += line("TPOT", m.tpot());
  s += line("E2E", m.e2e());
  s += line("queue", m.queue());
  s += fmt::format("output {:.1f} tok/s  SLO attainment {:.1f}%  goodput {:.2f} req/s\n",
                   safe_div(double(m.output_tokens()), duration),
                   100 * safe_div(double(m.met_slo()), double(m.completed())),
                   safe_div(double(m.met_slo()), duration));
  s += fmt::format("prefix-cache hit {:.1f}% of blocks  preemptions {}  energy {:.3g} J ({:.3g} J/token)\n",
                   100 * safe_div(double(r.totals.prefix_hit_blocks), double(r.totals.prefix_lookup_blocks)),
                   r.totals.preemptions, r.totals.energy_j,
                   safe_div(r.totals.energy_j, double(m.output_tokens())));
  return s;
}

}  // namespace infergrid::sim
