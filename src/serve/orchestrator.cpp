#include "serve/orchestrator.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "serve/gateway_state.hpp"

namespace infergrid::serve {

namespace {

constexpr auto kTick = std::chrono::milliseconds(100);
constexpr auto kKillAfterTerm = std::chrono::seconds(5);
constexpr const char* kPhaseNames[5] = {"fixed", "off", "starting", "ready", "draining"};

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

// The executable for argv[0]: as given when it names a path, else the first match on PATH
// (resolved before fork: the child may only make async-signal-safe calls).
std::string resolve(const std::string& cmd) {
  if (cmd.find('/') != std::string::npos) return cmd;
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/bin:/bin";
  for (std::size_t a = 0, b; a <= p.size(); a = b + 1) {
    b = p.find(':', a);
    if (b == std::string::npos) b = p.size();
    const std::string cand = p.substr(a, b - a) + "/" + cmd;
    if (access(cand.c_str(), X_OK) == 0) return cand;
  }
  return cmd;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

Orchestrator::Orchestrator(Gateway& gw) : gw_(gw) {
  const auto& cfg = gw.cfg();
  const std::size_t n = gw.backends();
  phase_ = std::make_unique<std::atomic<int>[]>(n);
  slots_.resize(n);
  pool_index_.assign(n, -1);
  for (std::size_t s = 0; s < cfg.sites.size(); ++s)
    for (std::size_t p = 0; p < cfg.sites[s].pools.size(); ++p) {
      Pool pool;
      pool.site = static_cast<int>(s);
      pool.index = static_cast<int>(p);
      pool.model = cfg.sites[s].pools[p].model;
      pools_.push_back(std::move(pool));
    }
  for (std::size_t i = 0; i < n; ++i) {
    const auto& b = gw.backend(i);
    phase_[i] = static_cast<int>(b.pool < 0 ? SlotPhase::kFixed : SlotPhase::kOff);
    if (b.pool < 0) continue;
    for (std::size_t k = 0; k < pools_.size(); ++k)
      if (pools_[k].site == gw.site_of(i) && pools_[k].index == b.pool) {
        pool_index_[i] = static_cast<int>(k);
        pools_[k].slots.push_back(i);
      }
  }
}

Orchestrator::~Orchestrator() { stop_all(); }

int Orchestrator::pool_of(int site, const std::string& model) const {
  for (std::size_t k = 0; k < pools_.size(); ++k)
    if (pools_[k].site == site && pools_[k].model == model) return static_cast<int>(k);
  return -1;
}

void Orchestrator::start() {
  if (pools_.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (std::size_t k = 0; k < pools_.size(); ++k) {
      const auto& pc = gw_.cfg().sites[static_cast<std::size_t>(pools_[k].site)].pools[static_cast<std::size_t>(pools_[k].index)];
      for (int r = 0; r < pc.initial; ++r) launch(pools_[k].slots[static_cast<std::size_t>(r)]);
    }
  }
  timer_ = std::make_unique<boost::asio::steady_timer>(gw_.ioc());
  tick();
}

void Orchestrator::tick() {
  timer_->expires_after(kTick);
  timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    try {
      std::lock_guard<std::mutex> lock(mu_);
      reap();
    } catch (const std::exception& e) {
      fmt::print(stderr, "gateway: orchestrator: {}\n", e.what());
    }
    tick();
  });
}

void Orchestrator::launch(std::size_t i) {
  const auto& b = gw_.backend(i);
  auto& pool = pools_[static_cast<std::size_t>(pool_index_[i])];
  const auto& site = gw_.cfg().sites[static_cast<std::size_t>(pool.site)];
  const auto& pc = site.pools[static_cast<std::size_t>(b.pool)];
  std::vector<std::string> args;
  for (const auto& a : pc.command)
    args.push_back(replace_all(replace_all(a, "{port}", std::to_string(b.port)), "{model}", pc.model));
  const std::string exe = resolve(args.front());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string log = "/dev/null";
  if (!pc.log_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(pc.log_dir, ec);
    log = fmt::format("{}/{}-{}.log", pc.log_dir, site.name, b.port);
  }
  const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  const long max_fd = std::max(256L, sysconf(_SC_OPEN_MAX) > 0 ? std::min(sysconf(_SC_OPEN_MAX), 65536L) : 1024L);
  const pid_t pid = fork();
  if (pid == 0) {
    // The child: async-signal-safe calls only, then exec.
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the gateway
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, nullptr);
    const int null_in = open("/dev/null", O_RDONLY);
    if (null_in >= 0) dup2(null_in, 0);
    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    for (long fd = 3; fd < max_fd; ++fd) close(static_cast<int>(fd));  // the gateway's sockets stay its own
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  if (out >= 0) close(out);
  ++pool.starts;
  if (pid < 0) {
    ++pool.failed;
    fmt::print(stderr, "gateway: pool {}/{}: fork failed: {}\n", site.name, pc.model, std::strerror(errno));
    return;
  }
  auto& s = slots_[i];
  s = Slot{};
  s.pid = pid;
  s.t_start = std::chrono::steady_clock::now();
  gw_.live(i).scrape_failures.store(0);
  gw_.live(i).failures.store(0);
  phase_[i] = static_cast<int>(SlotPhase::kStarting);
}

void Orchestrator::begin_drain(std::size_t i) {
  auto& s = slots_[i];
  s.t_drain = std::chrono::steady_clock::now();
  phase_[i] = static_cast<int>(SlotPhase::kDraining);
}

void Orchestrator::scale(int pool_id, int n) {
  if (pool_id < 0 || static_cast<std::size_t>(pool_id) >= pools_.size()) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto& pool = pools_[static_cast<std::size_t>(pool_id)];
  n = std::clamp(n, 0, static_cast<int>(pool.slots.size()));
  std::vector<std::size_t> starting, ready, off;
  for (const auto i : pool.slots) {
    const auto p = phase(i);
    if (p == SlotPhase::kStarting) starting.push_back(i);
    else if (p == SlotPhase::kReady) ready.push_back(i);
    else if (p == SlotPhase::kOff) off.push_back(i);
  }
  int have = static_cast<int>(starting.size() + ready.size());
  for (std::size_t k = 0; have < n && k < off.size(); ++k, ++have) launch(off[k]);
  // Fewer: cancel starts first (nothing runs there yet), then drain the least loaded.
  while (have > n && !starting.empty()) {
    begin_drain(starting.back());
    starting.pop_back();
    --have;
  }
  std::sort(ready.begin(), ready.end(), [&](std::size_t a, std::size_t b) {
    return gw_.live(a).inflight.load() < gw_.live(b).inflight.load();
  });
  for (std::size_t k = 0; have > n && k < ready.size(); ++k, --have) begin_drain(ready[k]);
}

void Orchestrator::scraped_ok(std::size_t i) {
  if (phase(i) != SlotPhase::kStarting) return;
  std::string model;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (phase(i) != SlotPhase::kStarting) return;
    auto& pool = pools_[static_cast<std::size_t>(pool_index_[i])];
    pool.last_cold_start_s = seconds_since(slots_[i].t_start);
    pool.cold_starts.add(pool.last_cold_start_s);
    ++pool.ready;
    phase_[i] = static_cast<int>(SlotPhase::kReady);
    model = pool.model;
  }
  gw_.dispatch(model);  // requests queued for capacity may go now
}

// Under mu_, every tick: collects replicas that exited, times out starts, ends drains.
void Orchestrator::reap() {
  for (auto& pool : pools_) {
    const auto& pc = gw_.cfg().sites[static_cast<std::size_t>(pool.site)].pools[static_cast<std::size_t>(pool.index)];
    for (const auto i : pool.slots) {
      auto& s = slots_[i];
      if (s.pid <= 0) continue;
      int status = 0;
      const pid_t r = waitpid(s.pid, &status, WNOHANG);
      const auto p = phase(i);
      if (r == s.pid || (r < 0 && errno == ECHILD)) {
        if (s.timed_out) {
          // counted as failed when it was killed
        } else if (p == SlotPhase::kDraining) ++pool.stops;
        else if (p == SlotPhase::kStarting) ++pool.failed;
        else {
          ++pool.crashed;
          fmt::print(stderr, "gateway: pool {}/{}: replica on port {} exited ({} {})\n",
                     gw_.cfg().sites[static_cast<std::size_t>(pool.site)].name, pool.model, gw_.backend(i).port,
                     WIFSIGNALED(status) ? "signal" : "status", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        }
        s = Slot{};
        phase_[i] = static_cast<int>(SlotPhase::kOff);
        continue;
      }
      if (p == SlotPhase::kStarting && seconds_since(s.t_start) > pc.ready_timeout_s) {
        fmt::print(stderr, "gateway: pool {}/{}: replica on port {} not ready after {} s; killed\n",
                   gw_.cfg().sites[static_cast<std::size_t>(pool.site)].name, pool.model, gw_.backend(i).port,
                   pc.ready_timeout_s);
        kill(s.pid, SIGKILL);
        phase_[i] = static_cast<int>(SlotPhase::kDraining);
        ++pool.failed;
        s.timed_out = true;
        s.termed = true;
        s.t_term = std::chrono::steady_clock::now();
        continue;
      }
      if (p != SlotPhase::kDraining) continue;
      if (!s.termed) {
        const bool idle = gw_.live(i).inflight.load() == 0;
        if (idle || seconds_since(s.t_drain) > pc.drain_timeout_s) {
          kill(s.pid, SIGTERM);
          s.termed = true;
          s.t_term = std::chrono::steady_clock::now();
        }
      } else if (std::chrono::steady_clock::now() - s.t_term > kKillAfterTerm) {
        kill(s.pid, SIGKILL);
      }
    }
  }
}

void Orchestrator::stop_all() {
  std::lock_guard<std::mutex> lock(mu_);
  if (timer_) timer_->cancel();
  std::vector<pid_t> pids;
  for (auto& s : slots_)
    if (s.pid > 0) {
      kill(s.pid, SIGTERM);
      pids.push_back(s.pid);
      s = Slot{};
    }
  const auto t0 = std::chrono::steady_clock::now();
  for (const pid_t pid : pids) {
    while (waitpid(pid, nullptr, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(2)) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (pool_index_[i] >= 0) phase_[i] = static_cast<int>(SlotPhase::kOff);
}

Orchestrator::Counts Orchestrator::counts(int pool_id) const {
  Counts c;
  if (pool_id < 0 || static_cast<std::size_t>(pool_id) >= pools_.size()) return c;
  std::lock_guard<std::mutex> lock(mu_);
  const auto& pool = pools_[static_cast<std::size_t>(pool_id)];
  c.slots = static_cast<int>(pool.slots.size());
  for (const auto i : pool.slots) {
    const auto p = phase(i);
    c.starting += p == SlotPhase::kStarting;
    c.ready += p == SlotPhase::kReady;
    c.draining += p == SlotPhase::kDraining;
  }
  c.last_cold_start_s = pool.last_cold_start_s;
  return c;
}

std::string Orchestrator::metrics() const {
  if (pools_.empty()) return {};
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  const auto labels = [&](const Pool& p) {
    return fmt::format("site=\"{}\",model_name=\"{}\"", gw_.cfg().sites[static_cast<std::size_t>(p.site)].name, p.model);
  };
  out += "# HELP infergrid_gateway_pool_replicas Replicas of each pool by phase (off, starting, ready, draining).\n"
         "# TYPE infergrid_gateway_pool_replicas gauge\n";
  for (const auto& p : pools_)
    for (int ph = 1; ph < 5; ++ph) {
      int n = 0;
      for (const auto i : p.slots) n += static_cast<int>(phase(i)) == ph;
      out += fmt::format("infergrid_gateway_pool_replicas{{{},phase=\"{}\"}} {}\n", labels(p), kPhaseNames[ph], n);
    }
  const auto counter = [&](const char* name, const char* help, auto field) {
    out += fmt::format("# HELP {} {}\n# TYPE {} counter\n", name, help, name);
    for (const auto& p : pools_) out += fmt::format("{}{{{}}} {}\n", name, labels(p), field(p));
  };
  counter("infergrid_gateway_pool_starts_total", "Replica processes started.", [](const Pool& p) { return p.starts; });
  counter("infergrid_gateway_pool_ready_total", "Started replicas that became ready (answered /metrics).",
          [](const Pool& p) { return p.ready; });
  counter("infergrid_gateway_pool_stops_total", "Replicas drained and stopped.", [](const Pool& p) { return p.stops; });
  counter("infergrid_gateway_pool_failed_starts_total", "Starts that exited or timed out before ready.",
          [](const Pool& p) { return p.failed; });
  counter("infergrid_gateway_pool_crashes_total", "Ready replicas that exited on their own.",
          [](const Pool& p) { return p.crashed; });
  out += "# HELP infergrid_gateway_pool_cold_start_seconds Start to ready (first good /metrics scrape), per start.\n"
         "# TYPE infergrid_gateway_pool_cold_start_seconds summary\n";
  for (const auto& p : pools_) {
    const auto& c = p.cold_starts;
    if (c.count() > 0)
      for (const double q : {0.5, 0.99})
        out += fmt::format("infergrid_gateway_pool_cold_start_seconds{{{},quantile=\"{}\"}} {}\n", labels(p), q, c.quantile(q));
    out += fmt::format("infergrid_gateway_pool_cold_start_seconds_sum{{{}}} {}\n", labels(p),
                       c.mean() * static_cast<double>(c.count()));
    out += fmt::format("infergrid_gateway_pool_cold_start_seconds_count{{{}}} {}\n", labels(p), c.count());
  }
  return out;
}

}  // namespace infergrid::serve
