// `infergrid demo`: a small local fabric. Emulated engines stand for sites around the world (each
// adds its WAN round trip from the gateway), a gateway routes between them, clients in six
// metros send mixed traffic, one site fails half-way; then it prints where requests went and why.
#include "serve/demo.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "net/fiber.hpp"

extern char** environ;

namespace infergrid::serve {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

struct Child {
  pid_t pid = -1;
  int port = 0;
};

// Starts `infergrid ARGS...` and waits for its "listening on HOST:PORT" line.
Child spawn_self(const std::vector<std::string>& args) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  std::vector<std::string> all = {"/proc/self/exe"};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  Child c;
  if (posix_spawn(&c.pid, "/proc/self/exe", &fa, nullptr, argv.data(), environ) != 0)
    throw std::runtime_error("cannot start " + args[0]);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  std::string out;
  char buf[256];
  while (out.find('\n') == std::string::npos) {
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  close(fds[0]);
  const auto p = out.rfind(':');
  if (out.find("listening on") == std::string::npos || p == std::string::npos)
    throw std::runtime_error("no port from " + args[0] + ": " + out);
  c.port = std::atoi(out.c_str() + p + 1);
  return c;
}

struct Outcome {
  int status = 0;
  double ms = 0;
  std::string site;
};

Outcome post(int port, const std::string& body, const std::string& location, const std::string& priority) {
  Outcome o;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    boost::asio::io_context ioc;
    beast::tcp_stream s(ioc);
    s.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    http::request<http::string_body> req{http::verb::post, "/v1/chat/completions", 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::content_type, "application/json");
    req.set("x-infergrid-client-location", location);
    req.set("x-infergrid-priority", priority);
    req.body() = body;
    req.prepare_payload();
    http::write(s, req);
    beast::flat_buffer b;
    http::response<http::string_body> res;
    http::read(s, b, res);
    o.status = static_cast<int>(res.result_int());
    o.site = std::string(res["x-infergrid-site"]);
  } catch (const std::exception&) {
    o.status = -1;
  }
  o.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return o;
}

}  // namespace

int run_demo(const DemoOptions& o) {
  struct SiteDef {
    const char* name;
    core::LatLon pos;
  };
  const std::vector<SiteDef> sites = {{"tokyo", {35.68, 139.69}},
                                      {"frankfurt", {50.11, 8.68}},
                                      {"virginia", {38.9, -77.0}},
                                      {"sao-paulo", {-23.55, -46.63}},
                                      {"singapore", {1.29, 103.85}}};
  const std::size_t nsites = std::clamp<std::size_t>(static_cast<std::size_t>(o.sites), 3, sites.size());
  const core::LatLon gateway_pos{50.11, 8.68};  // the gateway runs in Frankfurt
  const auto& rtt = net::FiberModel::builtin();
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("infergrid-demo-{}", getpid());
  std::filesystem::create_directories(dir);
  std::vector<Child> engines;
  std::string cfg = fmt::format("listen: 127.0.0.1:0\npolicy: {}\nlocation: [50.11, 8.68]\naccess_log: {}\nsites:\n",
                                o.policy, (dir / "access.log").string());
  std::printf("infergrid demo: %zu sites, each an emulated llama3-8b engine on h100-80gb that adds its WAN round trip\n"
              "from the gateway (Frankfurt); policy %s; %d requests from 6 metros; site %s fails half-way.\n\n",
              nsites, o.policy.c_str(), o.requests, sites[0].name);
  for (std::size_t s = 0; s < nsites; ++s) {
    const double wan = s == 1 ? 1 : rtt.rtt_ms(gateway_pos, sites[s].pos);
    engines.push_back(spawn_self({"engine", "--model", "llama3-8b", "--gpu", "h100-80gb", "--port", "0",
                                  "--add-latency-ms", fmt::format("{:.1f}", wan), "--seed", std::to_string(s + 1)}));
    cfg += fmt::format("  - name: {}\n    location: [{}, {}]\n    backends:\n      - url: http://127.0.0.1:{}\n"
                       "        models: [llama3-8b]\n        max_concurrency: 64\n",
                       sites[s].name, sites[s].pos.lat, sites[s].pos.lon, engines.back().port);
    std::printf("  %-10s engine on port %d, WAN round trip %.0f ms\n", sites[s].name, engines.back().port, wan);
  }
  std::ofstream(dir / "gateway.yaml") << cfg;
  const Child gw = spawn_self({"gateway", "--config", (dir / "gateway.yaml").string()});
  std::printf("  gateway on port %d (config %s)\n\n", gw.port, (dir / "gateway.yaml").string().c_str());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  const std::vector<std::string> metros = {"Tokyo", "London", "New York", "Sao Paulo", "Mumbai", "Sydney"};
  std::atomic<int> next{0};
  std::mutex mu;
  std::map<std::string, std::map<std::string, int>> table;  // metro -> site -> count
  std::map<std::string, std::vector<double>> ms_by_class;
  std::map<int, int> statuses;
  bool killed = false;
  auto worker = [&](int w) {
    core::Rng rng(static_cast<std::uint64_t>(w) + 1, "demo");
    while (true) {
      const int i = next.fetch_add(1);
      if (i >= o.requests) return;
      if (i == o.requests / 2) {
        std::lock_guard<std::mutex> lock(mu);
        if (!killed) {
          kill(engines[0].pid, SIGKILL);
          killed = true;
          std::printf("  [request %d] killed site %s\n", i, sites[0].name);
        }
      }
      const std::string& metro = metros[rng.below(metros.size())];
      const double u = rng.uniform();
      const std::string prio = u < 0.1 ? "critical" : u < 0.8 ? "interactive" : "batch";
      const std::string body = nlohmann::json{{"model", "llama3-8b"},
                                              {"messages", {{{"role", "user"}, {"content", "demo request " + std::to_string(i)}}}},
                                              {"max_tokens", prio == "batch" ? 64 : 16}}
                                   .dump();
      const auto r = post(gw.port, body, metro, prio);
      std::lock_guard<std::mutex> lock(mu);
      ++statuses[r.status];
      ++table[metro][r.status == 200 ? r.site : fmt::format("({})", r.status)];
      if (r.status == 200) ms_by_class[prio].push_back(r.ms);
    }
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < o.concurrency; ++w) threads.emplace_back(worker, w);
  for (auto& t : threads) t.join();

  std::printf("\nwhere requests went (client metro -> site: count)\n");
  for (const auto& [metro, row] : table) {
    std::printf("  %-10s", metro.c_str());
    for (const auto& [site, n] : row) std::printf("  %s: %d", site.c_str(), n);
    std::printf("\n");
  }
  std::printf("\nstatus counts:");
  for (const auto& [st, n] : statuses) std::printf("  %d: %d", st, n);
  std::printf("\nmedian latency by class:");
  for (auto& [cls, v] : ms_by_class) {
    std::sort(v.begin(), v.end());
    std::printf("  %s %.0f ms", cls.c_str(), v[v.size() / 2]);
  }
  std::printf("\n\nwhy (the gateway's access log, %s):\n", (dir / "access.log").string().c_str());
  std::ifstream log(dir / "access.log");
  std::string line;
  int shown = 0, n = 0;
  std::vector<std::string> lines;
  while (std::getline(log, line)) lines.push_back(line);
  for (const auto& l : lines) {
    ++n;
    const auto j = nlohmann::json::parse(l, nullptr, false);
    if (j.is_discarded()) continue;
    const bool interesting = shown < 3 || (j["attempts"].get<int>() > 1 && shown < 6);
    if (!interesting) continue;
    ++shown;
    std::printf("  %s from [%.1f, %.1f] -> %s (%s)\n", j["id"].get<std::string>().c_str(), j["client"][0].get<double>(),
                j["client"][1].get<double>(), j["site"].is_null() ? "-" : j["site"].get<std::string>().c_str(),
                j["why"].get<std::string>().c_str());
  }
  for (auto& e : engines) kill(e.pid, SIGTERM);
  kill(gw.pid, SIGTERM);
  for (auto& e : engines) waitpid(e.pid, nullptr, 0);
  waitpid(gw.pid, nullptr, 0);
  std::printf("\n%d requests, %d logged; every one answered: %s\n", o.requests, n,
              statuses.count(-1) ? "no (client errors above)" : "yes");
  return statuses.count(-1) ? 1 : 0;
}

}  // namespace infergrid::serve
