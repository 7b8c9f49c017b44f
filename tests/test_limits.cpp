// The rate limiter: hand-worked counts on the local counters, one combined limit for two
// limiters on one Redis (alternating and from 4 threads), an outage and a recovery, hostile
// tenant names. Each Redis case starts its own redis-server on a free loopback port; a missing
// redis-server fails the test.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "serve/limits.hpp"

extern char** environ;

using infergrid::serve::RateDecision;
using infergrid::serve::RateLimit;
using infergrid::serve::RateLimiter;

namespace {

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) close(fd);
    return 0;
  }
  close(fd);
  return ntohs(a.sin_port);
}

// True when a server on 127.0.0.1:port answers PING with +PONG within 200 ms.
bool pings(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  bool ok = false;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6) {
    pollfd p{fd, POLLIN, 0};
    char buf[16] = {};
    ok = poll(&p, 1, 200) == 1 && recv(fd, buf, sizeof buf - 1, 0) >= 5 &&
         std::strncmp(buf, "+PONG", 5) == 0;
  }
  close(fd);
  return ok;
}

// A redis-server child process, without persistence, killed when the object goes.
class RedisServer {
 public:
  explicit RedisServer(int port = free_port()) : port_(port) {}
  ~RedisServer() { stop(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Empty on success, else why not.
  std::string start() {
    if (port_ == 0) return "no free port";
    const std::string port = std::to_string(port_);
    const char* argv[] = {"redis-server", "--port",     port.c_str(),   "--bind", "127.0.0.1",
                          "--save",       "",           "--appendonly", "no",     "--daemonize",
                          "no",           "--loglevel", "warning",      nullptr};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    const int rc =
        posix_spawnp(&pid_, "redis-server", &fa, nullptr, const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      pid_ = -1;
      return std::string("cannot start redis-server: ") + std::strerror(rc);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return "redis-server exited at once (status " + std::to_string(status) + ")";
      }
      if (pings(port_)) return "";
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    stop();
    return "redis-server does not answer PING";
  }

  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // SIGSTOP / SIGCONT: a server that accepts connections but answers nothing.
  void pause() { kill(pid_, SIGSTOP); }
  void resume() { kill(pid_, SIGCONT); }

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_;
  pid_t pid_ = -1;
};

// A command timeout that a loaded test machine (sanitizers, parallel builds) does not reach;
// exact counts must not depend on the scheduler. The stall case keeps a short one.
constexpr int kPatient = 2000;

// The middle of a window, so that nothing rolls over during a case: window 1'000'000 of 60 s.
constexpr std::int64_t kMid = 60'000'000'000 + 30'000;

}  // namespace

TEST(RateLimiterLocal, RequestsByHand) {
  RateLimiter rl(1, "");
  EXPECT_FALSE(rl.redis_configured());
  const RateLimit lim{3, 0};
  const std::int64_t t = 10'000'250;  // window 10'000, 750 ms left
  for (int i = 0; i < 3; ++i) {
    const RateDecision d = rl.admit("acme", lim, 5, t + i);
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.window, 10'000);
    EXPECT_EQ(d.limit_requests, 3);
    EXPECT_EQ(d.remaining_requests, 2 - i);
    EXPECT_EQ(d.limit_tokens, 0);
    EXPECT_EQ(d.remaining_tokens, 0);
    EXPECT_NEAR(d.reset_requests_s, 0.750 - 0.001 * i, 1e-9);
    EXPECT_FALSE(d.shared);
  }
  RateDecision d = rl.admit("acme", lim, 5, t + 500);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.limited_by, "requests");
  EXPECT_NEAR(d.retry_after_s, 0.250, 1e-9);
  EXPECT_EQ(d.remaining_requests, 0);
  // The last millisecond of the window still waits a millisecond.
  d = rl.admit("acme", lim, 5, 10'000'999);
  EXPECT_FALSE(d.allowed);
  EXPECT_NEAR(d.retry_after_s, 0.001, 1e-9);
  // Another tenant is not affected.
  EXPECT_TRUE(rl.admit("other", lim, 5, t).allowed);
  // The next window starts from zero.
  d = rl.admit("acme", lim, 5, 10'001'000);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.window, 10'001);
  EXPECT_EQ(d.remaining_requests, 2);
  EXPECT_NEAR(d.reset_requests_s, 1.0, 1e-9);
  EXPECT_FALSE(rl.shared());
  EXPECT_EQ(rl.redis_errors(), 0u);
}

TEST(RateLimiterLocal, TokensByHandAndRefunds) {
  RateLimiter rl(2, "");
  const RateLimit lim{0, 100};
  const std::int64_t t = 4'000;  // window 2, 2 s left
  RateDecision d = rl.admit("t", lim, 60, t);
  ASSERT_TRUE(d.allowed);
  EXPECT_EQ(d.window, 2);
  EXPECT_EQ(d.remaining_tokens, 40);
  EXPECT_NEAR(d.reset_tokens_s, 2.0, 1e-9);
  // 40 + 50 > 100 remaining: refused, nothing counted.
  d = rl.admit("t", lim, 50, t + 1);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.limited_by, "tokens");
  EXPECT_EQ(d.remaining_tokens, 40);
  EXPECT_NEAR(d.retry_after_s, 1.999, 1e-9);
  d = rl.admit("t", lim, 40, t + 2);  // exactly the rest
  ASSERT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining_tokens, 0);
  // The first request used 25 of its 60: 35 back.
  rl.adjust_tokens("t", 2, -35);
  d = rl.admit("t", lim, 36, t + 3);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.remaining_tokens, 35);
  d = rl.admit("t", lim, 35, t + 4);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining_tokens, 0);
  // Used 10 more than reserved: the count passes the limit, the remaining stays at 0.
  rl.adjust_tokens("t", 2, +10);
  d = rl.admit("t", lim, 1, t + 5);
  EXPECT_FALSE(d.allowed);
  // A refund larger than the count stops at zero.
  rl.adjust_tokens("t", 2, -1'000'000);
  d = rl.admit("t", lim, 100, t + 6);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining_tokens, 0);
  // A correction for another window (or tenant) changes nothing here.
  rl.adjust_tokens("t", 1, -100);
  rl.adjust_tokens("nobody", 2, -100);
  EXPECT_FALSE(rl.admit("t", lim, 1, t + 7).allowed);
  // Next window: the full limit; a late refund of window 2 does not touch window 3.
  d = rl.admit("t", lim, 100, 6'000);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.window, 3);
  rl.adjust_tokens("t", 2, -100);
  EXPECT_FALSE(rl.admit("t", lim, 1, 6'001).allowed);
}

TEST(RateLimiterLocal, RefusalCountsNothingAndRequestsComeFirst) {
  RateLimiter rl(1, "");
  const RateLimit lim{2, 100};
  const std::int64_t t = 500;
  // Too many tokens: refused by tokens, and the request is not counted.
  RateDecision d = rl.admit("x", lim, 101, t);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.limited_by, "tokens");
  EXPECT_EQ(d.remaining_requests, 2);
  EXPECT_EQ(d.remaining_tokens, 100);
  EXPECT_TRUE(rl.admit("x", lim, 10, t).allowed);
  d = rl.admit("x", lim, 10, t);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining_requests, 0);
  EXPECT_EQ(d.remaining_tokens, 80);
  // Both limits would refuse: requests is named.
  d = rl.admit("x", lim, 1000, t);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.limited_by, "requests");
  EXPECT_EQ(d.remaining_tokens, 80);
  // Unlimited: always allowed, negative reservations count as zero.
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(rl.admit("free", RateLimit{}, 1'000'000, t).allowed);
  EXPECT_TRUE(rl.admit("neg", RateLimit{0, 10}, -50, t).allowed);
  EXPECT_EQ(rl.admit("neg", RateLimit{0, 10}, 10, t).remaining_tokens, 0);
}

TEST(RateLimiterLocal, WindowsAndAddresses) {
  // Windows are aligned to the epoch, also before it.
  RateLimiter rl(3, "");
  EXPECT_DOUBLE_EQ(rl.window_s(), 3);
  EXPECT_EQ(rl.admit("a", {}, 0, 0).window, 0);
  EXPECT_EQ(rl.admit("a", {}, 0, 2'999).window, 0);
  EXPECT_EQ(rl.admit("a", {}, 0, 3'000).window, 1);
  EXPECT_EQ(rl.admit("b", {}, 0, -1).window, -1);
  EXPECT_THROW(RateLimiter(0, ""), infergrid::core::InputError);
  EXPECT_THROW(RateLimiter(1, "nohost"), infergrid::core::InputError);
  EXPECT_THROW(RateLimiter(1, "127.0.0.1:"), infergrid::core::InputError);
  EXPECT_THROW(RateLimiter(1, "127.0.0.1:70000"), infergrid::core::InputError);
  EXPECT_THROW(RateLimiter(1, "127.0.0.1:6x79"), infergrid::core::InputError);
  EXPECT_THROW(RateLimiter(1, "127.0.0.1:6379", "p", 0), infergrid::core::InputError);
  EXPECT_NO_THROW(RateLimiter(1, "[::1]:6379"));
}

TEST(RateLimiterRedis, TwoGatewaysShareOneLimit) {
  RedisServer redis;
  ASSERT_EQ(redis.start(), "");
  RateLimiter a(60, redis.address(), "test:share", kPatient),
      b(60, redis.address(), "test:share", kPatient);
  int allowed = 0, last_allowed = -1;
  for (int i = 0; i < 150; ++i) {
    const RateDecision d = (i % 2 == 0 ? a : b).admit("acme", RateLimit{100, 0}, 7, kMid + i);
    EXPECT_TRUE(d.shared);
    if (d.allowed) {
      ++allowed;
      last_allowed = i;
      EXPECT_EQ(d.remaining_requests, 100 - allowed);
    } else {
      EXPECT_EQ(d.limited_by, "requests");
      EXPECT_EQ(d.remaining_requests, 0);
    }
  }
  EXPECT_EQ(allowed, 100);
  EXPECT_EQ(last_allowed, 99);
  EXPECT_TRUE(a.shared());
  EXPECT_TRUE(b.shared());
  EXPECT_EQ(a.redis_errors() + b.redis_errors(), 0u);

  // Tokens: 33 of 30 fit in 1000; a refund through one gateway is seen by the other.
  const RateLimit tok{0, 1000};
  allowed = 0;
  std::int64_t window = 0;
  for (int i = 0; i < 40; ++i) {
    const RateDecision d = (i % 2 == 0 ? a : b).admit("tok", tok, 30, kMid);
    if (d.allowed) ++allowed, window = d.window;
  }
  EXPECT_EQ(allowed, 33);
  EXPECT_EQ(b.admit("tok", tok, 11, kMid).remaining_tokens, 10);
  a.adjust_tokens("tok", window, -60);  // two requests used nothing
  RateDecision d = b.admit("tok", tok, 70, kMid);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining_tokens, 0);
  // A request admitted on local counters is not refunded in Redis.
  a.adjust_tokens("tok", window, -500, /*counted_shared=*/false);
  EXPECT_FALSE(b.admit("tok", tok, 1, kMid).allowed);
  // A correction of a window that has no keys creates none (nothing to expire them).
  a.adjust_tokens("tok", window + 5, +1000);
  d = b.admit("tok", tok, 1000, kMid + 5 * 60'000);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.window, window + 5);
  // Refunds stop at zero in Redis too.
  b.adjust_tokens("tok", window + 5, -5000);
  EXPECT_EQ(a.admit("tok", tok, 0, kMid + 5 * 60'000).remaining_tokens, 1000);
  // The next window starts from zero for everyone.
  d = a.admit("acme", RateLimit{100, 0}, 7, kMid + 60'000);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining_requests, 99);
}

TEST(RateLimiterRedis, ConcurrentAdmitsNeverExceedTheLimit) {
  RedisServer redis;
  ASSERT_EQ(redis.start(), "");
  RateLimiter a(60, redis.address(), "test:conc", kPatient),
      b(60, redis.address(), "test:conc", kPatient);
  std::atomic<int> requests_allowed{0}, tokens_allowed{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      RateLimiter& rl = k % 2 == 0 ? a : b;
      for (int i = 0; i < 100; ++i) {
        if (rl.admit("r", RateLimit{200, 0}, 1, kMid).allowed) ++requests_allowed;
        if (rl.admit("t", RateLimit{0, 1000}, 13, kMid).allowed) ++tokens_allowed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(requests_allowed.load(), 200);
  EXPECT_EQ(tokens_allowed.load(), 1000 / 13);
  EXPECT_TRUE(a.shared() && b.shared());
  EXPECT_EQ(a.redis_errors() + b.redis_errors(), 0u);
}

TEST(RateLimiterRedis, OutageFallsBackAndRecovers) {
  RedisServer redis;
  ASSERT_EQ(redis.start(), "");
  RateLimiter rl(60, redis.address(), "test:outage", kPatient);
  EXPECT_TRUE(rl.redis_configured());
  EXPECT_FALSE(rl.shared());  // no call yet
  const RateLimit lim{10, 0};
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(rl.admit("acme", lim, 1, kMid).shared);
  EXPECT_TRUE(rl.shared());

  redis.stop();
  // The local counters continue from the 4 this gateway admitted: 6 more, then refused.
  for (int i = 0; i < 6; ++i) {
    const RateDecision d = rl.admit("acme", lim, 1, kMid);
    EXPECT_TRUE(d.allowed) << i;
    EXPECT_FALSE(d.shared);
    EXPECT_EQ(d.remaining_requests, 5 - i);
  }
  RateDecision d = rl.admit("acme", lim, 1, kMid);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.limited_by, "requests");
  EXPECT_FALSE(rl.shared());
  EXPECT_GT(rl.redis_errors(), 0u);
  // Reconnecting is tried at most once a second: these calls do not each cost an error.
  const auto errors = rl.redis_errors();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) rl.admit("probe", RateLimit{}, 1, kMid);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
  EXPECT_LE(rl.redis_errors(), errors + 1);

  ASSERT_EQ(redis.start(), "");  // same port
  const auto back = std::chrono::steady_clock::now();
  while (!rl.shared() && std::chrono::steady_clock::now() - back < std::chrono::seconds(3)) {
    rl.admit("probe", RateLimit{}, 1, kMid);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(rl.shared());
  EXPECT_LT(std::chrono::steady_clock::now() - back, std::chrono::milliseconds(1500));
  // The restarted Redis forgot the window (no persistence): the shared count starts again.
  d = rl.admit("acme", lim, 1, kMid);
  EXPECT_TRUE(d.shared);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining_requests, 9);
}

TEST(RateLimiterRedis, StalledRedisCostsOneTimeoutASecond) {
  RedisServer redis;
  ASSERT_EQ(redis.start(), "");
  RateLimiter rl(60, redis.address(), "test:stall", 200);
  const RateLimit lim{1000, 0};
  ASSERT_TRUE(rl.admit("a", lim, 1, kMid).shared);
  redis.pause();
  auto t0 = std::chrono::steady_clock::now();
  RateDecision d = rl.admit("a", lim, 1, kMid);  // waits for the 200 ms command timeout
  EXPECT_TRUE(d.allowed);
  EXPECT_FALSE(d.shared);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(190));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(900));
  EXPECT_EQ(rl.redis_errors(), 1u);
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(rl.admit("a", lim, 1, kMid).allowed);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(150));
  EXPECT_EQ(rl.redis_errors(), 1u);
  redis.resume();
  const auto back = std::chrono::steady_clock::now();
  while (!rl.shared() && std::chrono::steady_clock::now() - back < std::chrono::seconds(3)) {
    rl.admit("probe", RateLimit{}, 1, kMid);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(rl.shared());
  EXPECT_LT(std::chrono::steady_clock::now() - back, std::chrono::milliseconds(1500));
  // Redis counted the first request, and the one that timed out if it ran it on waking (which
  // a client cannot know); the 20 admitted locally in between are this gateway's alone.
  d = rl.admit("a", lim, 1, kMid);
  EXPECT_TRUE(d.shared);
  EXPECT_TRUE(d.remaining_requests == 998 || d.remaining_requests == 997) << d.remaining_requests;
}

TEST(RateLimiterRedis, UnreachableRedisIsLocal) {
  const int port = free_port();  // nothing listens there
  RateLimiter rl(1, "127.0.0.1:" + std::to_string(port));
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    const RateDecision d = rl.admit("a", RateLimit{3, 0}, 1, 1'500);
    EXPECT_EQ(d.allowed, i < 3);
    EXPECT_FALSE(d.shared);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
  EXPECT_FALSE(rl.shared());
  EXPECT_EQ(rl.redis_errors(), 1u);  // one failed connect; the rest wait for the next second
  rl.adjust_tokens("a", 1, -1);
  EXPECT_EQ(rl.redis_errors(), 1u);
}

TEST(RateLimiterRedis, HostileTenantNames) {
  RedisServer redis;
  ASSERT_EQ(redis.start(), "");
  std::string nul("a\0b", 3), nul2("a\0c", 3);
  std::string big(10 * 1024, 'x');
  big[100] = '\0';
  big[200] = '\xff';
  const std::vector<std::string> names{
      "\xff\xfe\x80\xc3", "a b\r\nFLUSHALL\r\n", "{}:*?[", "", nul, nul2, big};
  RateLimiter shared(60, redis.address(), "test:hostile", kPatient), local(60, "");
  for (RateLimiter* rl : {&shared, &local}) {
    for (const auto& name : names) {
      RateDecision d = rl->admit(name, RateLimit{2, 100}, 50, kMid);
      EXPECT_TRUE(d.allowed);
      EXPECT_EQ(d.shared, rl == &shared);
      EXPECT_TRUE(rl->admit(name, RateLimit{2, 100}, 50, kMid).allowed);
      d = rl->admit(name, RateLimit{2, 100}, 0, kMid);
      EXPECT_FALSE(d.allowed) << name.size();
      EXPECT_EQ(d.limited_by, "requests");
      rl->adjust_tokens(name, d.window, -50);
      EXPECT_EQ(rl->admit(name, RateLimit{3, 100}, 50, kMid).remaining_tokens, 0);
    }
  }
  EXPECT_TRUE(shared.shared());
  EXPECT_EQ(shared.redis_errors(), 0u);
  // FLUSHALL did not run: the first name's count is still there.
  EXPECT_FALSE(shared.admit(names[0], RateLimit{3, 0}, 0, kMid).allowed);
}
