#pragma once
// The planet the twin runs: sites with accelerators, power and carbon; DCI links between them;
// metros where users live; central repositories; the workload's traffic classes; and the
// scenario's timed events (outages, link cuts, capacity loss, surges, publications).
// Loaded from YAML (docs/world.md); every error names the file, line and field.
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/geo.hpp"
#include "core/units.hpp"
#include "model/catalog.hpp"
#include "workload/generator.hpp"
#include "workload/request.hpp"

namespace infergrid::world {

enum class Tier { kCore, kRegional, kEdge };
const char* tier_name(Tier t);

struct Deployment {
  std::string model, accelerator;
  int tp = 1;
  // > 1: expert parallelism over ep accelerators per replica (MoE models), attention data-parallel
  // in groups of tp (model/perf_model.hpp).
  int ep = 1;
  int replicas = 1;
  // Disaggregated across sites: this deployment's replicas prefill, and each request's KV moves
  // over the DCI to `decode_at`'s deployment of the same model, which decodes it (empty: both here).
  std::string decode_at;
  int decode_site = -1;  // its index, resolved once every site is read
  int line = 0;          // where it was declared, for errors found later
  int gpus() const { return ep > 1 ? ep : tp; }  // accelerators one replica holds
};

struct Site {
  std::string id;
  core::LatLon pos;
  Tier tier = Tier::kRegional;
  std::map<std::string, int> accelerators;  // type -> count
  double power_cap_kw = 0;
  double pue = 1.2;
  double carbon_g_per_kwh = 400;
  std::vector<Deployment> deployments;
  std::vector<std::string> shards;  // retrieval-corpus shards held here
};

struct Link {
  int a = 0, b = 0;  // site indices; links are full duplex (one capacity each way)
  double gbps = 400;
  double km = 0;      // fiber length
  double transceiver_w = 0;  // per end
  double bulk_load = -1;     // background copies offered each way, share of capacity (< 0: the world's bulk.load)
};

struct Metro {
  std::string name, country;
  core::LatLon pos;
  double population = 0;
  // Its share of the world's requests: by the `markets:` section's country shares (cities
  // within a country by population), else its population (relative weights).
  double demand_weight = 0;
  double utc_offset_h = 0;
  double last_mile_ms = 8;
  double uplink_gbps = 100;
};

struct Repository {
  std::string id;
  int site = 0;
};

// A traffic class of the planet workload.
struct TrafficClass {
  std::string name;
  double share = 0;  // of all requests
  workload::Priority priority = workload::Priority::kInteractive;
  std::string model;
  workload::LengthDist prompt, output;
  // Multimodal: images per request, tokens per image, and bytes per image; audio and video
  // attachments as a fraction of requests with their sizes.
  workload::LengthDist images{workload::LengthDist::Kind::kFixed, 0, 0, {}};
  double tokens_per_image = 0;
  double mb_per_image = 0;
  double audio_fraction = 0, audio_mb = 0, audio_tokens = 0;
  double video_fraction = 0, video_mb = 0, video_tokens = 0;
  // Reasoning: retrieval steps, each querying a corpus shard wherever it is held.
  workload::LengthDist retrievals{workload::LengthDist::Kind::kFixed, 0, 0, {}};
  double retrieval_mb = 0;        // bytes moved to the serving site per step
  double retrieval_tokens = 0;    // tokens added to the prompt per step
  double retrieval_compute_ms = 0;  // index lookup at the holder
  double session_continue = 0;    // probability a request continues a recent session (prefix reuse)
  double slo_ttft_ms = 0, slo_tpot_ms = 0;  // 0: no bound
};

struct Workload {
  double requests_per_day = 1e6;
  std::array<double, 24> diurnal{};  // relative demand by local hour (normalized to mean 1)
  // Minute-by-minute rhythm of a replayed trace (arrivals per minute over its mean), looped over
  // the run and multiplied into the demand; empty: steady within each minute's diurnal rate.
  std::vector<double> rhythm;
  std::string rhythm_source;
  std::vector<TrafficClass> classes;
};

struct Event {
  enum class Kind { kOutage, kLinkCut, kCapacity, kLinkCapacity, kSurge, kPublish, kPowerCap } kind = Kind::kOutage;
  core::Ns at = 0;
  core::Ns duration = 0;  // 0: to the end
  int site = -1, link = -1, metro = -1;
  std::string country;  // surge over all metros of a country
  double factor = 1;    // capacity left (kCapacity, kLinkCapacity), demand multiplier (kSurge), budget left (kPowerCap)
  int repo = -1;
  std::string artifact;
  std::string model;    // publish: only sites deploying it pull (empty: every site)
  bool roll = false;    // publish of a model: once a site has it, its replicas are rolled to it
  double size_gb = 0;
  int line = 0;
  bool from_scenario = false;  // read by load_scenario (not the world's own): it sets the event window
};

// How the fleet changes (docs/control.md): weights load from local disk at load_gb_s after a
// pull, then the server warms up; hosts draw host_w_per_gpu beside each powered accelerator
// (negative: the accelerator's catalog host_w); power is sampled and budgets held every
// power_window_s.
struct FleetParams {
  double load_gb_s = 1.55;
  double warmup_s = 30;
  double host_w_per_gpu = -1;
  double power_window_s = 5;
  // The engines' host-memory KV tier (engine::EngineConfig::host_kv_tokens): GB of host memory
  // per accelerator held for it (0: none), and the host-to-GPU rate per accelerator (PCIe Gen5
  // x16: 64 GB/s each way, NVIDIA H100 datasheet) at which a request's blocks found there load.
  double kv_host_gb_per_gpu = 0;
  double kv_host_gb_s = 64;
  // A local-SSD tier under host memory (engine::EngineConfig::ssd_kv_tokens): GB per accelerator
  // (0: none) and its read rate per accelerator: one NVMe drive per GPU (NVIDIA DGX H100: 8 x 3.84 TB
  // NVMe U.2 for 8 GPUs) on PCIe Gen4 x4, whose link bounds it at 7.9 GB/s.
  double kv_ssd_gb_per_gpu = 0;
  double kv_ssd_gb_s = 7.9;
};

// Background bulk copies between neighbouring sites (docs/planet.md "Bulk copies"): storage
// replication, backups, dataset and checkpoint moves, the large site-to-site copies that B4 and
// SWAN carry below every other class and that take what the link leaves. On each link, each way,
// copies arrive as a Poisson process offering `load` x the link's capacity over the run, each of
// copy_gb at full scale on average (exponential; at a 1:scale model it crosses as copy_gb / scale,
// like every once-per-site object, so that a copy takes its real time).
struct BulkParams {
  double load = 0;  // 0: none
  double copy_gb = 100;
};

struct World {
  std::string name;
  FleetParams fleet;
  BulkParams bulk;
  // Per controller, its parameters (the `control:` section: {reactive: {target_waiting: 5}}).
  std::map<std::string, std::map<std::string, double>> control;
  std::map<std::string, int> control_line;  // where each controller's section is
  std::string file;
  double route_factor = 1.68;
  double per_hop_ms = 0.1;
  // A 1:scale model of a real platform (docs/planet.md "Scale and sizing"): counts and capacities
  // are written at the model's scale (requests, accelerators, power, link and uplink Gbit/s);
  // what moves once per site (a model's weights for cold starts, a published artifact) is a real
  // object, and crosses the DCI as size / scale bytes, so that its transfer over a link 1/scale
  // as wide takes the real time. Per-request bytes (uploads, retrievals, KV) are not scaled.
  double scale = 1;
  std::vector<Site> sites;
  std::vector<Link> links;
  std::vector<Metro> metros;
  std::vector<Repository> repositories;
  Workload workload;
  std::vector<Event> events;

  int site_index(const std::string& id) const;  // -1 if unknown
  int metro_index(const std::string& name) const;
  int link_index(int a, int b) const;  // either direction; -1 if none
};

// Reads a world; checks it against the catalog (every deployment's model and accelerator
// exist, fit in memory, and the site holds the accelerators it deploys).
World load_world(const std::string& path, const model::Catalog& catalog);
// Appends a scenario file's events (`events:` list) to the world's.
void load_scenario(const std::string& path, World& world);
// Arrivals per minute of a trace over their mean (the first month at most; the last, partial
// minute dropped). Errors name the trace's file and line.
std::vector<double> trace_rhythm(const std::string& path, const std::string& format = "");
// The embedded default world: data/world/default.yaml.
std::string default_world_path();

}  // namespace infergrid::world
