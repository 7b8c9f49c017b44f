#pragma once
// `infergrid gateway`: an OpenAI-compatible front door that picks, for each request, a site and
// a backend through the router policies the twin uses, fed by live signals (each backend's
// /metrics scraped every 100 ms, its own in-flight counts, measured round trips, the client's
// modeled distance); sheds batch before interactive under overload and never sheds critical;
// retries what has streamed nothing; ejects backends by request outcomes (consecutive failures,
// tries that stall with no progress); ends a broken stream with an OpenAI error event. Tenants:
// API keys (SHA-256 digests), the highest class each may claim, requests and tokens per minute
// (shared between gateways through Redis), fairness by tokens served.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/geo.hpp"
#include "serve/http_server.hpp"

namespace infergrid::serve {

struct BackendConfig {
  std::string url, host;
  unsigned short port = 0;
  bool tls = false;          // https://
  std::string api_key;       // sent as Authorization: Bearer (vLLM --api-key)
  std::string ca_file;       // PEM bundle that verifies an https backend (default: the system's)
  std::vector<std::string> models;
  int max_concurrency = 256;  // in-flight requests at which the backend counts as full
  int pool = -1;              // the site's pool whose replica runs here (-1: a fixed backend)
};

// Replicas the gateway starts and stops itself (its orchestrator, src/serve/orchestrator.cpp):
// one model, a command run per replica with "{port}" and "{model}" replaced, one port per
// replica slot. The controller's scale decisions for (site, model) start replicas (a process,
// ready at its first good /metrics scrape) and drain them (no new requests; stopped with SIGTERM
// once nothing is in flight, SIGKILL after drain_timeout_s).
struct PoolConfig {
  std::string model;
  std::vector<std::string> command;
  std::vector<unsigned short> ports;
  int initial = 0;            // replicas started with the gateway
  int max_concurrency = 256;  // per replica, as a backend's
  double ready_timeout_s = 60;
  double drain_timeout_s = 60;
  std::string log_dir;        // each replica's stdout and stderr to DIR/SITE-PORT.log (empty: discarded)
};

struct SiteConfig {
  std::string name;
  core::LatLon location;
  std::vector<BackendConfig> backends;  // fixed ones first, then one per pool port
  std::vector<PoolConfig> pools;
};

struct TenantConfig {
  std::string name;
  std::vector<std::string> key_sha256;  // lower-case hex digests of the tenant's API keys
  int max_class = 1;                    // highest class it may claim: 0 critical, 1 interactive, 2 batch
  std::int64_t requests_per_minute = 0, tokens_per_minute = 0;  // 0: unlimited
};

struct GatewayConfig {
  std::string file;
  std::string listen_host = "127.0.0.1";
  unsigned short listen_port = 8080;
  std::string policy = "nearest";
  bool has_location = false;
  core::LatLon location;  // the gateway's own (default: its first site's)
  std::vector<SiteConfig> sites;
  int threads = 2;
  // Processes sharing the listening socket (each with its threads, scrapers, counters and 1/N of
  // every backend's capacity), under a parent that restarts any that dies.
  int processes = 1;
  int scrape_interval_ms = 100;
  int connect_timeout_ms = 1000;
  int first_byte_timeout_ms = 60000;
  int idle_timeout_ms = 30000;     // between two chunks of an upstream stream
  int retries = 2;                 // further backends tried when nothing has streamed yet
  // Fractions of capacity at which batch, then interactive get 429; above them is critical's
  // headroom (an engine does not preempt running requests for a critical arrival: vLLM preempts
  // only for KV space, so critical needs free slots).
  double batch_shed_at = 0.6;
  double interactive_shed_at = 0.75;
  // The control plane hosted here (src/control, as in the twin): its name and parameters. The
  // gateway carries out shed levels, routing weights and, for a site's pool, scale decisions;
  // power and bandwidth decisions are counted, not carried out (docs/control.md).
  std::string controller = "static";
  std::map<std::string, double> control;
  // Per model, the tightest TPOT SLO of what it serves, in ms (`tpot_slo_ms: {llama3-8b: 50}`): a
  // controller that schedules engines keeps their iterations within it (control::DeploymentState).
  std::map<std::string, double> tpot_slo_ms;
  int queue_timeout_ms = 2000;     // over its threshold a request waits this long for a slot, then 429
  int max_queued = 1024;           // waiting per model and class at most (0: shed at once)
  int breaker_failures = 3;        // consecutive failed requests that eject a backend ...
  int breaker_open_ms = 2000;      // ... for this long times the ejections in a row (at most 10x)
  int stall_ms = 1000;             // a try with no first byte while its backend makes no progress
  int max_ejection_percent = 50;   // of a model's backends, ejected at once at most
  std::size_t max_upstream_body_bytes = 16 << 20;  // a whole (non-streamed) answer, buffered
  std::size_t relay_buffer_bytes = 1 << 20;        // queued for a client before reading upstream pauses
  ServerLimits client;             // client connections: counts, timeouts, write queue
  TlsFiles tls;                    // the listener's certificate and key (PEM); empty: plain HTTP
  std::vector<TenantConfig> tenants;  // none: the gateway is open (said at start)
  std::string redis;               // HOST:PORT sharing tenant counters between gateways; empty: local
  double rate_window_s = 60;       // the window of requests_per_minute / tokens_per_minute
  int default_output_tokens = 256;  // reserved against tokens_per_minute when max_tokens is absent
  std::string access_log;          // path; "-" for stderr; empty for none
  std::int64_t access_log_max_bytes = 64 << 20;  // rotated past this size ...
  int access_log_keep = 3;                        // ... keeping this many old files (.1 newest)
};

// Reads the YAML config; errors name file, line and field.
GatewayConfig load_gateway_config(const std::string& path);

// Serves until SIGINT/SIGTERM. Prints "listening on HOST:PORT" on stdout once bound.
int run_gateway(const GatewayConfig& cfg);

// Lower-case hex SHA-256 of `s` (how tenant keys are stored).
std::string sha256_hex(const std::string& s);

}  // namespace infergrid::serve
