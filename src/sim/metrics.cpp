#include "sim/metrics.hpp"

#include <fmt/format.h>

#include "core/error.hpp"

namespace infergrid::sim {

Metrics::~Metrics() { close(); }

void Metrics::open_requests_csv(const std::string& path) {
  csv_ = std::fopen(path.c_str(), "wb");
  if (!csv_) core::fail_input(path, 0, "", "cannot write");
  buf_ =
      "id,status,replica,priority,arrival_s,first_scheduled_s,first_token_s,finish_s,"
      "prompt_tokens,output_tokens,cached_tokens,preemptions,queue_ms,ttft_ms,tpot_ms,e2e_ms,energy_j\n";
}

void Metrics::record(const engine::Completion& c) {
  const double queue = core::to_ms(c.first_scheduled - c.arrival);
  const double ttft = core::to_ms(c.first_token - c.arrival);
  const double e2e = core::to_ms(c.finish - c.arrival);
  const double tpot =
      c.output_tokens > 1 ? core::to_ms(c.finish - c.first_token) / (c.output_tokens - 1) : 0;
  if (c.rejected) {
    ++rejected_;
  } else {
    ++completed_;
    output_tokens_ += static_cast<std::uint64_t>(c.output_tokens);
    ttft_.add(ttft);
    energy_.add(c.energy_j);
    e2e_.add(e2e);
    queue_.add(queue);
    if (c.output_tokens > 1) tpot_.add(tpot);
    const bool ok = (slo_.ttft_ms <= 0 || ttft <= slo_.ttft_ms) &&
                    (slo_.tpot_ms <= 0 || tpot <= slo_.tpot_ms);
    if (ok) ++met_slo_;
  }
  if (c.finish > last_finish_) last_finish_ = c.finish;
  if (!csv_) return;
  fmt::format_to(std::back_inserter(buf_),
                 "{},{},{},{},{:.6f},{:.6f},{:.6f},{:.6f},{},{},{},{},{:.3f},{:.3f},{:.3f},{:.3f},{:.3f}\n",
                 c.id, c.rejected ? "rejected" : "completed", c.replica, static_cast<int>(c.priority),
                 core::to_seconds(c.arrival), core::to_seconds(c.first_scheduled),
                 core::to_seconds(c.first_token), core::to_seconds(c.finish), c.prompt_tokens,
                 c.output_tokens, c.cached_tokens, c.preemptions, queue, ttft, tpot, e2e, c.energy_j);
  if (buf_.size() > (1 << 20)) {
    std::fwrite(buf_.data(), 1, buf_.size(), csv_);
    buf_.clear();
  }
}

void Metrics::close() {
  if (!csv_) return;
  std::fwrite(buf_.data(), 1, buf_.size(), csv_);
  buf_.clear();
  std::fclose(csv_);
  csv_ = nullptr;
}

}  // namespace infergrid::sim
