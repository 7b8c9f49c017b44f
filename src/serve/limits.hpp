#pragma once
// Per-tenant rate limits for the gateway: requests and tokens per fixed window, counted in Redis
// so that every gateway replica enforces one shared limit, with this process's own counters as
// the fallback when Redis cannot be reached.
//
// Why fixed windows aligned to the Unix epoch (window = floor(now_ms / window_ms)):
//  - every gateway agrees on the window from its clock alone, with no coordination;
//  - one atomic Lua script per request checks and counts both keys (no read-modify-write race
//    between gateways, one round trip);
//  - two integer keys per tenant and window, which expire by themselves: simple to audit
//    (`GET` the key and compare with the access log).
// The price: a window limits what is counted inside it, not any rolling span. A tenant that
// spends its whole limit at the end of one window and again at the start of the next gets up to
// 2x the limit within one rolling window length (for per-minute limits: up to 2x the per-minute
// limit admitted inside some rolling 60 s, never more). Sliding windows would bound that but need a
// sorted set or two windows read per call.
//
// Other bounds worth knowing:
//  - Without Redis (never configured, or down), each process counts only what it admitted
//    itself: N gateways admit up to N x the limit in a window. When Redis fails mid-window a
//    gateway continues from its own count of that window (its local counters always mirror its
//    own admits), not from zero.
//  - A Redis restart (no persistence) forgets the current window's counts; what gateways
//    admitted locally during an outage is not pushed back when Redis returns.
//  - A command that timed out may still have been run by Redis: that request is then counted
//    both locally and in Redis (an undercount never results, only an overcount of one).
//  - Refunds clamp at zero in Redis as well as locally: a refund of a request counted before a
//    Redis restart must not push the new count negative and hand out free tokens.
//  - Clocks: gateways whose clocks differ by d disagree on the window boundary for d.
//  - A reservation larger than the token limit itself can never be admitted; callers should
//    answer it as a bad request rather than with retry_after_s.
//
// Blocking: Redis calls are synchronous (hiredis) on one connection behind one mutex, with
// connect and command timeouts (100 ms by default); after a failure the connection is dropped
// and re-established at most once per second, so an outage or a stalled Redis costs at most
// about one timeout per second, not one per request. Throughput is one round trip at a time per
// limiter: 70-100 us an admit on loopback (10-14k/s, measured on a busy 2-core machine).
// SIGPIPE from a dead connection is blocked in the calling thread for the call.
#include <cstdint>
#include <memory>
#include <string>

namespace infergrid::serve {

struct RateLimit {
  std::int64_t requests = 0, tokens = 0;  // per window; 0 = unlimited
};

struct RateDecision {
  bool allowed = true;
  std::string limited_by;    // "requests" or "tokens" when refused (requests checked first)
  double retry_after_s = 0;  // when refused: seconds until the current window ends (>= 1 ms)
  // Limits as given; remaining after this request was counted (as found when refused; 0 where
  // the limit is 0 = unlimited).
  std::int64_t limit_requests = 0, remaining_requests = 0, limit_tokens = 0, remaining_tokens = 0;
  double reset_requests_s = 0, reset_tokens_s = 0;  // seconds until the current window ends
  std::int64_t window = 0;                          // the window index the request was counted in
  bool shared = false;  // decided (and counted) by Redis, not by the local counters
};

class RateLimiter {
 public:
  // window_s: window length in seconds (60 for per-minute limits; tests use 1-3 s), at least
  // 1 ms. redis: "" for local only, or "HOST:PORT" (IPv6 as "[::1]:6379"). key_prefix namespaces
  // the keys: PREFIX:{tHEX(tenant)}:WINDOW_MS:WINDOW:r and ...:t (the braces keep both keys of a
  // tenant in one Redis Cluster slot). timeout_ms bounds the connect and each command (tests on
  // loaded machines pass more). Throws core::InputError on a malformed `redis`, window or
  // timeout; does not connect (the first call does).
  RateLimiter(double window_s, std::string redis, std::string key_prefix = "infergrid:rl",
              int timeout_ms = 100);
  ~RateLimiter();
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Admits one request of `tenant` that reserves `tokens` (prompt + the most it may generate;
  // negative counts as 0) and counts the request and the reservation when allowed; refused, it
  // counts nothing. now_ms: Unix time in ms (system clock), so gateways on one machine or
  // several agree on window boundaries. Never throws.
  RateDecision admit(const std::string& tenant, const RateLimit& lim, std::int64_t tokens,
                     std::int64_t now_ms);

  // Corrects the token count of an admitted request in the window it was counted in (delta > 0:
  // used more than reserved; < 0: refund of what it did not use). Pass the decision's `shared`:
  // a request admitted on the local counters during an outage is not refunded in Redis, where it
  // was never counted. Counts never go below zero, and a window whose keys have expired is left
  // alone (no key is created without an expiry). Never throws.
  void adjust_tokens(const std::string& tenant, std::int64_t window, std::int64_t delta,
                     bool counted_shared = true);

  bool shared() const;  // Redis configured and reachable at the last call
  bool redis_configured() const;
  std::uint64_t redis_errors() const;  // failed Redis calls so far
  double window_s() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infergrid::serve
