#include "serve/limits.hpp"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/error.hpp"

namespace infergrid::serve {
namespace {

constexpr auto kReconnectEvery = std::chrono::seconds(1);

// KEYS: requests, tokens. ARGV: request limit, token limit, reservation, expiry (ms); a limit of
// 0 is none. Returns {allowed, 0 | 1 requests | 2 tokens, requests, tokens} as counted after
// (allowed) or as found (refused). Both keys are counted even without a limit, for the
// remaining_* answers, and live 2 windows from the last admit: at least one window past their
// own, so late adjustments still find them.
constexpr const char* kAdmitScript = R"lua(
local r = tonumber(redis.call('GET', KEYS[1]) or '0')
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
local lr, lt, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if lr > 0 and r + 1 > lr then return {0, 1, r, t} end
if lt > 0 and t + n > lt then return {0, 2, r, t} end
r = redis.call('INCR', KEYS[1])
t = redis.call('INCRBY', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {1, 0, r, t}
)lua";

// KEYS: tokens. ARGV: delta. An expired (or never counted) window is left alone, so no key is
// created without an expiry; a refund larger than the count stops at zero (DECRBY by the stored
// string itself: Lua would print a large double as 1e+15, which INCRBY refuses).
constexpr const char* kAdjustScript = R"lua(
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if tonumber(v) + tonumber(ARGV[1]) < 0 then return redis.call('DECRBY', KEYS[1], v) end
return redis.call('INCRBY', KEYS[1], ARGV[1])
)lua";

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if (a % b != 0 && a < 0) --q;
  return q;
}

std::string hex(const std::string& s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * s.size());
  for (unsigned char c : s) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

// hiredis writes with write(2): a peer that has gone away raises SIGPIPE, whose default action
// ends the process. Block it in this thread for the call and swallow one that the call raised,
// leaving the process's signal dispositions alone.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{0, 0};
        sigtimedwait(&pipe_, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_, old_;
  bool was_pending_ = false;
};

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using RedisReply = std::unique_ptr<redisReply, ReplyDeleter>;

struct LocalCount {
  std::int64_t window = std::numeric_limits<std::int64_t>::min();
  std::int64_t requests = 0, tokens = 0;
};

// What a check found: allowed, the limit that refused (0 none, 1 requests, 2 tokens), and the
// counts after counting (allowed) or as found (refused).
struct Outcome {
  bool allowed = true;
  int by = 0;
  std::int64_t requests = 0, tokens = 0;
  std::int64_t window = 0;
};

std::int64_t sat_add(std::int64_t a, std::int64_t b) {
  std::int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? std::numeric_limits<std::int64_t>::max() : 0;
  return r;
}

}  // namespace

struct RateLimiter::Impl {
  std::int64_t window_ms = 60000;
  int timeout_ms = 100;
  bool configured = false;
  std::string host;
  int port = 0;
  std::string prefix;

  std::mutex redis_mu;  // guards ctx and next_connect
  redisContext* ctx = nullptr;
  std::chrono::steady_clock::time_point next_connect{};
  std::atomic<bool> shared{false};
  std::atomic<std::uint64_t> errors{0};

  std::mutex local_mu;  // guards local and swept
  std::unordered_map<std::string, LocalCount> local;
  std::int64_t swept = std::numeric_limits<std::int64_t>::min();

  ~Impl() {
    if (ctx != nullptr) redisFree(ctx);
  }

  std::string key(const std::string& tenant, std::int64_t window, char kind) const {
    std::string k;
    k.reserve(prefix.size() + 2 * tenant.size() + 48);
    k += prefix;
    k += ":{t";
    k += hex(tenant);
    k += "}:";
    k += std::to_string(window_ms);
    k += ':';
    k += std::to_string(window);
    k += ':';
    k += kind;
    return k;
  }

  void fail(bool drop_connection) {
    errors.fetch_add(1, std::memory_order_relaxed);
    shared.store(false, std::memory_order_relaxed);
    if (drop_connection && ctx != nullptr) {
      redisFree(ctx);
      ctx = nullptr;
    }
  }

  // Under redis_mu. False while reconnecting is held back or when the attempt fails.
  bool connected() {
    if (ctx != nullptr) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_connect) {
      shared.store(false, std::memory_order_relaxed);
      return false;
    }
    next_connect = now + kReconnectEvery;
    const timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    ctx = redisConnectWithTimeout(host.c_str(), port, tv);
    if (ctx == nullptr || ctx->err != 0 || redisSetTimeout(ctx, tv) != REDIS_OK) {
      fail(true);
      return false;
    }
    return true;
  }

  // One command; null (and the error counted, the connection dropped if it is broken) on failure.
  RedisReply command(const std::vector<std::string>& args) {
    if (!connected()) return nullptr;
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.reserve(args.size());
    lens.reserve(args.size());
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    RedisReply r;
    {
      SigpipeGuard guard;
      r.reset(static_cast<redisReply*>(
          redisCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data())));
    }
    if (r == nullptr) {  // I/O error or timeout: the context cannot be used again
      fail(true);
      return nullptr;
    }
    if (r->type == REDIS_REPLY_ERROR) {  // script error, OOM, LOADING...: the link itself is fine
      fail(false);
      return nullptr;
    }
    return r;
  }

  bool redis_admit(const std::string& tenant, std::int64_t window, const RateLimit& lim,
                   std::int64_t n, Outcome& out) {
    const std::vector<std::string> args{"EVAL",
                                        kAdmitScript,
                                        "2",
                                        key(tenant, window, 'r'),
                                        key(tenant, window, 't'),
                                        std::to_string(lim.requests),
                                        std::to_string(lim.tokens),
                                        std::to_string(n),
                                        std::to_string(2 * window_ms)};
    std::lock_guard lock(redis_mu);
    RedisReply r = command(args);
    if (r == nullptr) return false;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
      fail(false);
      return false;
    }
    for (std::size_t i = 0; i < 4; ++i) {
      if (r->element[i]->type != REDIS_REPLY_INTEGER) {
        fail(false);
        return false;
      }
    }
    out.allowed = r->element[0]->integer == 1;
    out.by = static_cast<int>(r->element[1]->integer);
    out.requests = r->element[2]->integer;
    out.tokens = r->element[3]->integer;
    out.window = window;
    shared.store(true, std::memory_order_relaxed);
    return true;
  }

  void redis_adjust(const std::string& tenant, std::int64_t window, std::int64_t delta) {
    const std::vector<std::string> args{"EVAL", kAdjustScript, "1", key(tenant, window, 't'),
                                        std::to_string(delta)};
    std::lock_guard lock(redis_mu);
    RedisReply r = command(args);
    if (r == nullptr) return;
    if (r->type != REDIS_REPLY_INTEGER) {
      fail(false);
      return;
    }
    shared.store(true, std::memory_order_relaxed);
  }

  // Under local_mu: the tenant's entry, moved to `window` when that is newer. A clock that went
  // back keeps counting in the newest window seen (never a fresh one for free).
  LocalCount& entry(const std::string& tenant, std::int64_t window) {
    if (window > swept) {
      // Once per window: forget tenants idle for more than a window (a late adjustment of the
      // previous window still finds its entry), so the map holds only recent tenants.
      std::erase_if(local, [&](const auto& kv) { return kv.second.window < window - 1; });
      swept = window;
    }
    LocalCount& c = local[tenant];
    if (window > c.window) c = LocalCount{window, 0, 0};
    return c;
  }

  Outcome local_admit(const std::string& tenant, std::int64_t window, const RateLimit& lim,
                      std::int64_t n) {
    std::lock_guard lock(local_mu);
    LocalCount& c = entry(tenant, window);
    Outcome o;
    o.window = c.window;
    if (lim.requests > 0 && c.requests + 1 > lim.requests) {
      o.allowed = false;
      o.by = 1;
    } else if (lim.tokens > 0 && sat_add(c.tokens, n) > lim.tokens) {
      o.allowed = false;
      o.by = 2;
    } else {
      c.requests = sat_add(c.requests, 1);
      c.tokens = sat_add(c.tokens, n);
    }
    o.requests = c.requests;
    o.tokens = c.tokens;
    return o;
  }

  // Mirrors an admit that Redis counted, so that this process can continue from its own share
  // of the window if Redis goes away.
  void local_count(const std::string& tenant, std::int64_t window, std::int64_t n) {
    std::lock_guard lock(local_mu);
    LocalCount& c = entry(tenant, window);
    c.requests = sat_add(c.requests, 1);
    c.tokens = sat_add(c.tokens, n);
  }

  void local_adjust(const std::string& tenant, std::int64_t window, std::int64_t delta) {
    std::lock_guard lock(local_mu);
    auto it = local.find(tenant);
    if (it == local.end() || it->second.window != window) return;
    it->second.tokens = std::max<std::int64_t>(0, sat_add(it->second.tokens, delta));
  }
};

RateLimiter::RateLimiter(double window_s, std::string redis, std::string key_prefix, int timeout_ms)
    : impl_(std::make_unique<Impl>()) {
  if (timeout_ms < 1 || timeout_ms > 60000) {
    throw core::InputError("redis timeout: must be between 1 and 60000 ms");
  }
  impl_->timeout_ms = timeout_ms;
  const double ms = std::round(window_s * 1000);
  // Up to about 3 years, so that 2 windows in ms and the window arithmetic stay far from overflow.
  if (!std::isfinite(ms) || ms < 1 || ms > 1e11) {
    throw core::InputError("rate limit window: must be between 0.001 and 1e8 seconds");
  }
  impl_->window_ms = static_cast<std::int64_t>(ms);
  impl_->prefix = std::move(key_prefix);
  if (redis.empty()) return;
  const auto colon = redis.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == redis.size()) {
    throw core::InputError("redis: '" + redis + "' is not HOST:PORT");
  }
  std::string host = redis.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port = redis.substr(colon + 1);
  int p = 0;
  for (char c : port) {
    if (c < '0' || c > '9' || p > 65535) throw core::InputError("redis: '" + redis + "': bad port");
    p = p * 10 + (c - '0');
  }
  if (host.empty() || p < 1 || p > 65535) {
    throw core::InputError("redis: '" + redis + "' is not HOST:PORT");
  }
  impl_->configured = true;
  impl_->host = std::move(host);
  impl_->port = p;
}

RateLimiter::~RateLimiter() = default;

RateDecision RateLimiter::admit(const std::string& tenant, const RateLimit& lim,
                                std::int64_t tokens, std::int64_t now_ms) {
  RateDecision d;
  try {
    const RateLimit l{std::max<std::int64_t>(0, lim.requests),
                      std::max<std::int64_t>(0, lim.tokens)};
    const std::int64_t n = std::max<std::int64_t>(0, tokens);
    const std::int64_t w = impl_->window_ms;
    const std::int64_t window = floor_div(now_ms, w);
    Outcome o;
    d.shared = impl_->configured && impl_->redis_admit(tenant, window, l, n, o);
    if (d.shared) {
      if (o.allowed) impl_->local_count(tenant, window, n);
    } else {
      o = impl_->local_admit(tenant, window, l, n);
    }
    // Time to the end of the window the request was counted in (later than now's own window
    // only when the clock went back, see entry()).
    const std::int64_t rem = now_ms - floor_div(now_ms, w) * w;  // in [0, w)
    const double reset_s = static_cast<double>(w - rem) / 1000.0 +
                           static_cast<double>(o.window - window) * (w / 1000.0);
    d.allowed = o.allowed;
    d.window = o.window;
    d.limit_requests = l.requests;
    d.limit_tokens = l.tokens;
    d.remaining_requests = l.requests > 0 ? std::max<std::int64_t>(0, l.requests - o.requests) : 0;
    d.remaining_tokens = l.tokens > 0 ? std::max<std::int64_t>(0, l.tokens - o.tokens) : 0;
    d.reset_requests_s = d.reset_tokens_s = reset_s;
    if (!o.allowed) {
      d.limited_by = o.by == 2 ? "tokens" : "requests";
      d.retry_after_s = std::max(0.001, reset_s);
    }
  } catch (...) {
    // Only allocation can fail here. Fail open, as rate limiters conventionally do (Envoy's
    // failure_mode_deny defaults to false): a limiter fault must not take the gateway down.
    d = RateDecision{};
  }
  return d;
}

void RateLimiter::adjust_tokens(const std::string& tenant, std::int64_t window, std::int64_t delta,
                                bool counted_shared) {
  if (delta == 0) return;
  try {
    impl_->local_adjust(tenant, window, delta);
    if (impl_->configured && counted_shared) impl_->redis_adjust(tenant, window, delta);
  } catch (...) {
    // Allocation only; a lost correction is bounded by this one request's reservation.
  }
}

bool RateLimiter::shared() const { return impl_->shared.load(std::memory_order_relaxed); }
bool RateLimiter::redis_configured() const { return impl_->configured; }
std::uint64_t RateLimiter::redis_errors() const {
  return impl_->errors.load(std::memory_order_relaxed);
}
double RateLimiter::window_s() const { return static_cast<double>(impl_->window_ms) / 1000.0; }

}  // namespace infergrid::serve
