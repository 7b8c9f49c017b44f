#pragma once
// `infergrid gateway`: an OpenAI-compatible front door that picks, for each request, a site and
// a backend through the router policies the twin uses, fed by live signals (each backend's
// /metrics scraped every 100 ms, its own in-flight counts, measured round trips, the client's
// modeled distance); sheds batch before interactive under overload and never sheds critical;
// retries what has streamed nothing; ends a broken stream with an OpenAI error event.
#include <string>
#include <vector>

#include "core/geo.hpp"

namespace infergrid::serve {

struct BackendConfig {
  std::string url, host;
  unsigned short port = 0;
  std::vector<std::string> models;
  int max_concurrency = 256;  // in-flight requests at which the backend counts as full
};

struct SiteConfig {
  std::string name;
  core::LatLon location;
  std::vector<BackendConfig> backends;
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
  // every backend's capacity): past one process's descriptor limit (two per stream).
  int processes = 1;
  int scrape_interval_ms = 100;
  int connect_timeout_ms = 1000;
  int first_byte_timeout_ms = 60000;
  int idle_timeout_ms = 30000;
  int retries = 2;                 // further backends tried when nothing has streamed yet
  double batch_shed_at = 0.8;      // batch gets 429 above this fraction of capacity
  double interactive_shed_at = 1.0;
  int breaker_failures = 3;        // consecutive failures that open a backend's circuit
  int breaker_open_ms = 2000;
  std::string access_log;          // path; "-" for stderr; empty for none
};

// Reads the YAML config; errors name file, line and field.
GatewayConfig load_gateway_config(const std::string& path);

// Serves until SIGINT/SIGTERM. Prints "listening on HOST:PORT" on stdout once bound.
int run_gateway(const GatewayConfig& cfg);

}  // namespace infergrid::serve
