#include "control/site_router.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.hpp"
#include "core/priority.hpp"
#include "core/rng.hpp"

namespace infergrid::control {

namespace {

double per_replica(const SiteView& s) {
  return s.replicas > 0 ? static_cast<double>(s.outstanding) / s.replicas : 1e300;
}

template <class F>
std::vector<double> each(std::span<const SiteView> s, F f) {
  std::vector<double> v;
  v.reserve(s.size());
  for (const auto& x : s) v.push_back(f(x));
  return v;
}

class Nearest final : public SiteRouter {
 public:
  std::vector<double> scores(std::span<const SiteView> s) const override {
    return each(s, [](const SiteView& x) { return x.rtt_ms; });
  }
  const char* score_name() const override { return "rtt_ms (lowest wins)"; }
  std::optional<std::size_t> pick(const GeoRequest&, std::span<const SiteView> s) override {
    std::size_t best = 0;
    for (std::size_t i = 1; i < s.size(); ++i)
      if (s[i].rtt_ms < s[best].rtt_ms) best = i;
    return best;
  }
};

class RoundRobin final : public SiteRouter {
 public:
  std::vector<double> scores(std::span<const SiteView> s) const override {
    std::vector<double> v(s.size(), 0);
    if (!s.empty()) v[next_ % s.size()] = 1;
    return v;
  }
  const char* score_name() const override { return "next in turn (1)"; }
  std::optional<std::size_t> pick(const GeoRequest&, std::span<const SiteView> s) override {
    return next_++ % s.size();
  }

 private:
  std::size_t next_ = 0;
};

// Fewest requests outstanding at the site (the endpoint), ties to the nearest.
class LeastOutstanding final : public SiteRouter {
 public:
  std::vector<double> scores(std::span<const SiteView> s) const override {
    return each(s, [](const SiteView& x) { return static_cast<double>(x.outstanding); });
  }
  const char* score_name() const override { return "outstanding (lowest wins)"; }
  std::optional<std::size_t> pick(const GeoRequest&, std::span<const SiteView> s) override {
    std::size_t best = 0;
    for (std::size_t i = 1; i < s.size(); ++i)
      if (s[i].outstanding < s[best].outstanding ||
          (s[i].outstanding == s[best].outstanding && s[i].rtt_ms < s[best].rtt_ms))
        best = i;
    return best;
  }
};

class PowerOfTwo final : public SiteRouter {
 public:
  std::vector<double> scores(std::span<const SiteView> s) const override { return each(s, per_replica); }
  const char* score_name() const override { return "outstanding per replica (lower of two random wins)"; }
  explicit PowerOfTwo(std::uint64_t seed) : rng_(seed, "site-power-of-two") {}
  std::optional<std::size_t> pick(const GeoRequest&, std::span<const SiteView> s) override {
    if (s.size() == 1) return 0;
    const std::size_t a = rng_.below(s.size());
    std::size_t b = rng_.below(s.size() - 1);
    if (b >= a) ++b;
    return per_replica(s[b]) < per_replica(s[a]) ? b : a;
  }

 private:
  core::Rng rng_;
};

// SkyServe (SkyPilot serve) LeastLoadPolicy: the ready replica with the fewest in-flight
// requests, across all regions and clouds; it does not weigh distance. Replicas of a site share
// the site's queue here, so the per-replica count is the site's outstanding over its replicas;
// ties break by index, as the policy's min() does.
class SkyServe final : public SiteRouter {
 public:
  std::vector<double> scores(std::span<const SiteView> s) const override { return each(s, per_replica); }
  const char* score_name() const override { return "in-flight per replica (lowest wins)"; }
  std::optional<std::size_t> pick(const GeoRequest&, std::span<const SiteView> s) override {
    std::size_t best = 0;
    for (std::size_t i = 1; i < s.size(); ++i)
      if (per_replica(s[i]) < per_replica(s[best])) best = i;
    return best;
  }
};

// llm-d's endpoint picker, default profile: filter, score, pick the highest total. Scores:
// queue-scorer (1 at the shortest queue, 0 at the longest), kv-cache-utilization-scorer
// (1 - usage), prefix-cache-scorer (fraction of the prompt cached there).
class LlmD final : public SiteRouter {
 public:
  std::optional<std::size_t> pick(const GeoRequest&, std::span<const SiteView> s) override {
    const auto v = scores(s);
    std::size_t best = 0;
    for (std::size_t i = 1; i < v.size(); ++i)
      if (v[i] > v[best]) best = i;
    return best;
  }
  std::vector<double> scores(std::span<const SiteView> s) const override {
    double qmin = 1e300, qmax = -1;
    auto queue = [](const SiteView& v) { return v.replicas ? static_cast<double>(v.waiting) / v.replicas : 1e300; };
    for (const auto& v : s) {
      qmin = std::min(qmin, queue(v));
      qmax = std::max(qmax, queue(v));
    }
    return each(s, [&](const SiteView& v) {
      const double q = qmax > qmin ? (qmax - queue(v)) / (qmax - qmin) : 1.0;
      return 2 * q + 2 * (1 - v.kv_usage) + 3 * v.prefix_hit;
    });
  }
  const char* score_name() const override { return "2 queue + 2 (1 - kv) + 3 prefix (highest wins)"; }
};

// infergrid's one cost: the expected TTFT in ms of sending the request there.
double expected_ttft_ms(int prompt_tokens, const SiteView& v) {
  if (v.replicas <= 0) return 1e300;
  double wait_s;
  if (v.service_rps > 0 && v.batch_slots > 0) {
    // The requests queued for prefill, or those beyond the replicas' batches at the SLO (and this
    // one), whichever is more, wait; the replicas take them at their sustained rate.
    const double ahead = std::max(static_cast<double>(v.waiting),
                                  v.outstanding + 1.0 - static_cast<double>(v.replicas) * v.batch_slots);
    wait_s = ahead / (static_cast<double>(v.replicas) * v.service_rps);
  } else {
    // No engine model (the gateway): the requests waiting per replica, a second of work each.
    wait_s = static_cast<double>(v.waiting) / v.replicas;
  }
  const double prefill_s = v.prefill_tok_s > 0 ? std::max(0, prompt_tokens) * (1 - v.prefix_hit) / v.prefill_tok_s : 0;
  return v.rtt_ms + 1000 * (wait_s + prefill_s);
}

// The site of the lowest expected TTFT; the nearer on a tie.
std::size_t lowest_ttft(const GeoRequest& r, std::span<const SiteView> s) {
  std::size_t best = 0;
  double best_ms = expected_ttft_ms(r.prompt_tokens, s[0]);
  for (std::size_t i = 1; i < s.size(); ++i) {
    const double ms = expected_ttft_ms(r.prompt_tokens, s[i]);
    if (ms < best_ms || (ms == best_ms && s[i].rtt_ms < s[best].rtt_ms)) best = i, best_ms = ms;
  }
  return best;
}

class InferGrid final : public SiteRouter {
 public:
  std::optional<std::size_t> pick(const GeoRequest& r, std::span<const SiteView> s) override {
    return lowest_ttft(r, s);
  }
  std::vector<double> scores(std::span<const SiteView> s) const override {
    // The request's own prompt is not known here: the cost of a 1,000-token prompt.
    return each(s, [](const SiteView& x) { return expected_ttft_ms(1000, x); });
  }
  const char* score_name() const override { return "expected TTFT ms of a 1k-token prompt (lowest wins)"; }
};

// infergrid-green: the one cost for critical and interactive; batch, whose SLO is minutes, is
// deferrable work: it goes to the lowest-carbon site with headroom (nothing waiting, and its
// requests within kHeadroom of its replicas' batches at the SLO, so that it does not queue or
// shed there) whose expected TTFT stays within kBatchBudgetMs; else by the one cost (also when no
// site's carbon is known).
class InferGridGreen final : public SiteRouter {
 public:
  static constexpr double kBatchBudgetMs = 60'000;  // a tenth of the default world's 10-minute batch SLO
  static constexpr double kHeadroom = 0.5;
  static bool has_headroom(const SiteView& v) {
    if (v.batch_slots <= 0) return v.waiting == 0;  // no engine model: an empty queue
    return v.waiting == 0 && v.outstanding + 1.0 <= kHeadroom * v.replicas * v.batch_slots;
  }
  std::optional<std::size_t> pick(const GeoRequest& r, std::span<const SiteView> s) override {
    const std::size_t best = lowest_ttft(r, s);
    if (r.priority != static_cast<int>(core::Priority::kBatch)) return best;
    std::optional<std::size_t> green;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i].carbon_g_per_kwh <= 0 || !has_headroom(s[i]) || expected_ttft_ms(r.prompt_tokens, s[i]) > kBatchBudgetMs) continue;
      if (!green || s[i].carbon_g_per_kwh < s[*green].carbon_g_per_kwh) green = i;
    }
    return green.value_or(best);
  }
  std::vector<double> scores(std::span<const SiteView> s) const override {
    return each(s, [](const SiteView& x) { return x.carbon_g_per_kwh; });
  }
  const char* score_name() const override {
    return "batch: gCO2/kWh among sites with headroom within 60 s expected TTFT (lowest wins); else expected TTFT";
  }
};

}  // namespace

std::vector<std::string> site_router_names() {
  return {"nearest", "round-robin", "least-outstanding", "power-of-two", "skyserve", "llm-d", "infergrid", "infergrid-green"};
}

std::unique_ptr<SiteRouter> make_site_router(const std::string& name, std::uint64_t seed) {
  if (name == "nearest") return std::make_unique<Nearest>();
  if (name == "round-robin") return std::make_unique<RoundRobin>();
  if (name == "least-outstanding") return std::make_unique<LeastOutstanding>();
  if (name == "power-of-two") return std::make_unique<PowerOfTwo>(seed);
  if (name == "skyserve") return std::make_unique<SkyServe>();
  if (name == "llm-d") return std::make_unique<LlmD>();
  if (name == "infergrid") return std::make_unique<InferGrid>();
  if (name == "infergrid-green") return std::make_unique<InferGridGreen>();
  std::string all;
  for (const auto& n : site_router_names()) all += (all.empty() ? "" : ", ") + n;
  core::fail_flag("router", fmt::format("unknown router '{}' (planet mode: one of {})", name, all));
}

}  // namespace infergrid::control
