// The gateway's YAML config: every error names the file, line and field.
#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "control/site_router.hpp"
#include "core/error.hpp"
#include "control/fleet.hpp"
#include "serve/gateway.hpp"
#include "serve/openai.hpp"
#include "world/yaml_fields.hpp"

namespace infergrid::serve {

using world::Fields;

std::string sha256_hex(const std::string& s) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(s.data(), s.size(), md, &n, EVP_sha256(), nullptr);
  std::string out;
  out.reserve(2 * n);
  for (unsigned int i = 0; i < n; ++i) out += fmt::format("{:02x}", md[i]);
  return out;
}

namespace {

// "http://HOST:PORT" or "https://HOST:PORT" (a trailing slash allowed).
void parse_backend_url(const std::string& path, std::int64_t line, BackendConfig& b) {
  std::string rest;
  for (const char* scheme : {"http://", "https://"})
    if (b.url.rfind(scheme, 0) == 0) {
      rest = b.url.substr(std::string(scheme).size());
      b.tls = scheme[4] == 's';
    }
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  const auto pc = rest.rfind(':');
  std::int64_t bp = -1;
  if (rest.empty() || pc == std::string::npos || pc == 0 || !core::parse_int(rest.substr(pc + 1), bp) || bp < 1 ||
      bp > 65535 || rest.find('/') != std::string::npos)
    core::fail_input(path, line, "url", fmt::format("expected http://HOST:PORT or https://HOST:PORT, got '{}'", b.url));
  b.host = rest.substr(0, pc);
  b.port = static_cast<unsigned short>(bp);
}

int parse_class(const std::string& path, std::int64_t line, const std::string& key, const std::string& v) {
  const auto p = parse_priority(v);
  if (!p) core::fail_input(path, line, key, fmt::format("expected critical, interactive or batch, got '{}'", v));
  return *p;
}

// A non-empty list under `key` of the map read by `fields`; the error names the list or `owner`.
YAML::Node non_empty_list(const std::string& path, Fields& fields, const YAML::Node& owner, const std::string& key,
                          const std::string& what) {
  const YAML::Node n = fields.node(key);
  if (!n || !n.IsSequence() || n.size() == 0) core::fail_input(path, Fields::line(n ? n : owner), key, what);
  return n;
}

// `name` of an entry of a list, unique among `seen`.
template <class T>
std::string unique_name(const std::string& path, Fields& g, const YAML::Node& entry, const std::vector<T>& seen, const char* what) {
  std::string name = g.str("name", "", true);
  for (const auto& o : seen)
    if (o.name == name) core::fail_input(path, Fields::line(entry), "name", fmt::format("duplicate {} '{}'", what, name));
  return name;
}

void load_tenants(const std::string& path, Fields& f, GatewayConfig& c) {
  if (!f.has("tenants")) return;
  const YAML::Node ts = f.node("tenants");
  if (!ts.IsSequence()) core::fail_input(path, Fields::line(ts), "tenants", "expected a list");
  std::set<std::string> digests;
  for (const auto& tn : ts) {
    Fields g(path, tn, "tenants");
    TenantConfig t;
    t.name = unique_name(path, g, tn, c.tenants, "tenant");
    const YAML::Node keys = non_empty_list(path, g, tn, "api_key_sha256",
                                           "expected a non-empty list of SHA-256 digests (printf %s \"$KEY\" | sha256sum)");
    for (const auto& k : keys) {
      std::string d = k.IsScalar() ? k.Scalar() : "";
      std::transform(d.begin(), d.end(), d.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      if (d.size() != 64 || !std::all_of(d.begin(), d.end(), [](char ch) { return std::isxdigit(static_cast<unsigned char>(ch)); }))
        core::fail_input(path, Fields::line(k), "api_key_sha256",
                         "expected 64 hex digits, the SHA-256 of the key (keys are never stored in plain text)");
      if (!digests.insert(d).second) core::fail_input(path, Fields::line(k), "api_key_sha256", "this key belongs to another tenant");
      t.key_sha256.push_back(d);
    }
    t.max_class = parse_class(path, Fields::line(g.node("max_class") ? g.node("max_class") : YAML::Node(tn)), "max_class",
                              g.str("max_class", "interactive"));
    t.requests_per_minute = g.integer("requests_per_minute", 0, false, 0);
    t.tokens_per_minute = static_cast<std::int64_t>(g.num("tokens_per_minute", 0, false, 0, 1e15));
    c.tenants.push_back(std::move(t));
  }
}

// A site's pools: each port becomes a backend slot (http://127.0.0.1:PORT) that the
// orchestrator fills with a replica or leaves off.
void load_pools(const std::string& path, Fields& g, const YAML::Node& sn, const GatewayConfig& c, SiteConfig& s) {
  const YAML::Node ps = non_empty_list(path, g, sn, "pools", "expected a non-empty list of pools");
  std::set<unsigned> ports;
  for (const auto& st : c.sites)
    for (const auto& b : st.backends) ports.insert(b.port);
  for (const auto& b : s.backends) ports.insert(b.port);
  for (const auto& pn : ps) {
    Fields h(path, pn, "pools");
    PoolConfig p;
    p.model = h.str("model", "", true);
    for (const auto& o : s.pools)
      if (o.model == p.model)
        core::fail_input(path, Fields::line(pn), "model", fmt::format("site '{}' has a pool of '{}' already", s.name, p.model));
    const YAML::Node cmd = non_empty_list(path, h, pn, "command", "expected the replica's command as a non-empty list (argv)");
    for (const auto& a : cmd) {
      if (!a.IsScalar() || a.Scalar().empty()) core::fail_input(path, Fields::line(a), "command", "expected a non-empty string");
      p.command.push_back(a.Scalar());
    }
    bool has_port = false;
    for (const auto& a : p.command) has_port |= a.find("{port}") != std::string::npos;
    if (!has_port) core::fail_input(path, Fields::line(cmd), "command", "must contain {port}: each replica listens on its own");
    const YAML::Node pl = non_empty_list(path, h, pn, "ports", "expected a non-empty list of ports, one per replica slot");
    for (const auto& pt : pl) {
      std::int64_t v = -1;
      if (!pt.IsScalar() || !core::parse_int(pt.Scalar(), v) || v < 1 || v > 65535)
        core::fail_input(path, Fields::line(pt), "ports", "expected a port in [1, 65535]");
      if (v == c.listen_port || !ports.insert(static_cast<unsigned>(v)).second)
        core::fail_input(path, Fields::line(pt), "ports", fmt::format("port {} is used already", v));
      p.ports.push_back(static_cast<unsigned short>(v));
    }
    p.initial = h.integer("initial", 0, false, 0);
    if (p.initial > static_cast<int>(p.ports.size()))
      core::fail_input(path, Fields::line(h.node("initial")), "initial", "more than the pool's ports");
    p.max_concurrency = h.integer("max_concurrency", 256, false, 1);
    p.ready_timeout_s = h.num("ready_timeout_s", 60, false, 0.1, 86400);
    p.drain_timeout_s = h.num("drain_timeout_s", 60, false, 0, 86400);
    p.log_dir = h.str("log_dir", "");
    const int index = static_cast<int>(s.pools.size());
    for (const auto port : p.ports) {
      BackendConfig b;
      b.url = fmt::format("http://127.0.0.1:{}", port);
      b.host = "127.0.0.1";
      b.port = port;
      b.models = {p.model};
      b.max_concurrency = p.max_concurrency;
      b.pool = index;
      s.backends.push_back(std::move(b));
    }
    s.pools.push_back(std::move(p));
  }
}

}  // namespace

GatewayConfig load_gateway_config(const std::string& path) {
  const YAML::Node root = world::load_yaml_file(path);
  GatewayConfig c;
  c.file = path;
  try {
    Fields f(path, root, "gateway");
    const std::string listen = f.str("listen", "127.0.0.1:8080");
    const auto colon = listen.rfind(':');
    std::int64_t port = -1;
    if (colon == std::string::npos || !core::parse_int(listen.substr(colon + 1), port) || port < 0 || port > 65535)
      core::fail_input(path, Fields::line(f.node("listen")), "listen", "expected HOST:PORT");
    c.listen_host = listen.substr(0, colon);
    c.listen_port = static_cast<unsigned short>(port);
    c.policy = f.str("policy", "nearest");
    const auto names = control::site_router_names();
    if (std::find(names.begin(), names.end(), c.policy) == names.end())
      core::fail_input(path, Fields::line(f.node("policy")), "policy", fmt::format("unknown policy '{}'", c.policy));
    auto latlon = [&](const YAML::Node& n, const std::string& key) {
      core::LatLon p;
      if (!n.IsSequence() || n.size() != 2) core::fail_input(path, Fields::line(n), key, "expected [LAT, LON]");
      try {
        p.lat = n[0].as<double>();
        p.lon = n[1].as<double>();
      } catch (const YAML::Exception&) {
        core::fail_input(path, Fields::line(n), key, "expected [LAT, LON]");
      }
      if (!(std::fabs(p.lat) <= 90 && std::fabs(p.lon) <= 180)) core::fail_input(path, Fields::line(n), key, "out of range");
      return p;
    };
    if (f.has("location")) {
      c.location = latlon(f.node("location"), "location");
      c.has_location = true;
    }
    c.threads = f.integer("threads", 2, false, 1);
    c.processes = f.integer("processes", 1, false, 1);
    c.scrape_interval_ms = f.integer("scrape_interval_ms", 100, false, 10);
    c.connect_timeout_ms = f.integer("connect_timeout_ms", 1000, false, 1);
    c.first_byte_timeout_ms = f.integer("first_byte_timeout_ms", 60000, false, 1);
    c.idle_timeout_ms = f.integer("idle_timeout_ms", 30000, false, 1);
    c.retries = f.integer("retries", 2, false, 0);
    c.batch_shed_at = f.num("batch_shed_at", 0.6, false, 0, 100);
    c.interactive_shed_at = f.num("interactive_shed_at", 0.75, false, 0, 100);
    c.controller = f.str("controller", "static");
    {
      const auto names = control::controller_names();
      if (std::find(names.begin(), names.end(), c.controller) == names.end())
        core::fail_input(path, Fields::line(f.node("controller")), "controller",
                         fmt::format("unknown controller '{}' (static, reactive, skyserve, dynamo)", c.controller));
    }
    if (f.has("control")) {
      const YAML::Node cn = f.node("control");
      Fields g(path, cn, "control");
      for (const auto& [k, _] : control::controller_defaults(c.controller)) {
        if (g.has(k)) c.control[k] = g.num(k, 0, false, 0, 1e12);
      }
    }
    if (f.has("tpot_slo_ms")) {
      const YAML::Node tn = f.node("tpot_slo_ms");
      if (!tn.IsMap()) core::fail_input(path, Fields::line(tn), "tpot_slo_ms", "expected a map of model -> milliseconds");
      Fields g(path, tn, "tpot_slo_ms");
      for (auto it = tn.begin(); it != tn.end(); ++it) {
        const std::string m = it->first.Scalar();
        c.tpot_slo_ms[m] = g.num(m, 0, true, 1, 1e6);
      }
    }
    try {
      control::make_controller(c.controller, c.control, 1);
    } catch (const core::InputError& e) {
      core::fail_input(path, Fields::line(f.has("controller") ? f.node("controller") : root), "controller", e.what());
    }
    c.queue_timeout_ms = f.integer("queue_timeout_ms", 2000, false, 1);
    c.max_queued = f.integer("max_queued", 1024, false, 0);
    c.breaker_failures = f.integer("breaker_failures", 3, false, 1);
    c.breaker_open_ms = f.integer("breaker_open_ms", 2000, false, 1);
    c.stall_ms = f.integer("stall_ms", 1000, false, 10);
    c.max_ejection_percent = f.integer("max_ejection_percent", 50, false, 0);
    if (c.max_ejection_percent > 100)
      core::fail_input(path, Fields::line(f.node("max_ejection_percent")), "max_ejection_percent", "must be in [0, 100]");
    c.max_upstream_body_bytes = static_cast<std::size_t>(f.num("max_upstream_body_bytes", 16 << 20, false, 1024, 1 << 30));
    c.relay_buffer_bytes = static_cast<std::size_t>(f.num("relay_buffer_bytes", 1 << 20, false, 4096, 1 << 30));
    auto& cl = c.client;
    cl.max_connections = f.integer("max_connections", cl.max_connections, false, 1);
    cl.max_connections_per_client = f.integer("max_connections_per_client", cl.max_connections_per_client, false, 1);
    cl.idle_timeout_ms = f.integer("client_idle_timeout_ms", cl.idle_timeout_ms, false, 1);
    cl.header_timeout_ms = f.integer("client_header_timeout_ms", cl.header_timeout_ms, false, 1);
    cl.body_timeout_ms = f.integer("client_body_timeout_ms", cl.body_timeout_ms, false, 1);
    cl.write_timeout_ms = f.integer("client_write_timeout_ms", cl.write_timeout_ms, false, 1);
    cl.max_queued_bytes = static_cast<std::size_t>(f.num("client_max_queued_bytes", static_cast<double>(cl.max_queued_bytes), false, 4096, 1 << 30));
    if (cl.max_queued_bytes < c.relay_buffer_bytes)
      core::fail_input(path, Fields::line(f.node("client_max_queued_bytes")), "client_max_queued_bytes",
                       "must be at least relay_buffer_bytes");
    c.tls.cert = f.str("tls_cert", "");
    c.tls.key = f.str("tls_key", "");
    if (c.tls.cert.empty() != c.tls.key.empty())
      core::fail_input(path, Fields::line(root), c.tls.cert.empty() ? "tls_cert" : "tls_key", "tls_cert and tls_key go together");
    c.redis = f.str("redis", "");
    if (!c.redis.empty()) {
      const auto rc = c.redis.rfind(':');
      std::int64_t rp = -1;
      if (rc == std::string::npos || rc == 0 || !core::parse_int(c.redis.substr(rc + 1), rp) || rp < 1 || rp > 65535)
        core::fail_input(path, Fields::line(f.node("redis")), "redis", "expected HOST:PORT");
    }
    c.rate_window_s = f.num("rate_window_s", 60, false, 0.1, 86400);
    c.default_output_tokens = f.integer("default_output_tokens", 256, false, 1);
    c.access_log = f.str("access_log", "");
    c.access_log_max_bytes = static_cast<std::int64_t>(f.num("access_log_max_bytes", 64 << 20, false, 4096, 1e13));
    c.access_log_keep = f.integer("access_log_keep", 3, false, 1);
    load_tenants(path, f, c);
    const YAML::Node sites = non_empty_list(path, f, root, "sites", "expected a non-empty list");
    for (const auto& sn : sites) {
      Fields g(path, sn, "sites");
      SiteConfig s;
      s.name = unique_name(path, g, sn, c.sites, "site");
      if (!g.has("location")) core::fail_input(path, Fields::line(sn), "location", "missing");
      s.location = latlon(g.node("location"), "location");
      if (!g.has("backends") && !g.has("pools"))
        core::fail_input(path, Fields::line(sn), "backends", "expected backends, pools or both");
      const YAML::Node bs = g.has("backends") ? non_empty_list(path, g, sn, "backends", "expected a non-empty list") : YAML::Node();
      for (const auto& bn : bs) {
        Fields h(path, bn, "backends");
        BackendConfig b;
        b.url = h.str("url", "", true);
        parse_backend_url(path, Fields::line(h.node("url")), b);
        b.api_key = h.str("api_key", "");
        b.ca_file = h.str("ca_file", "");
        if (!b.ca_file.empty() && !b.tls)
          core::fail_input(path, Fields::line(h.node("ca_file")), "ca_file", "only an https:// backend takes a ca_file");
        const YAML::Node ms = non_empty_list(path, h, bn, "models", "expected a non-empty list of model names");
        for (const auto& m : ms) {
          if (!m.IsScalar()) core::fail_input(path, Fields::line(m), "models", "expected a model name");
          b.models.push_back(m.Scalar());
        }
        b.max_concurrency = h.integer("max_concurrency", 256, false, 1);
        s.backends.push_back(std::move(b));
      }
      if (g.has("pools")) load_pools(path, g, sn, c, s);
      c.sites.push_back(std::move(s));
    }
  } catch (const YAML::Exception& e) {
    core::fail_input(path, e.mark.line + 1, "", e.msg);
  }
  if (!c.has_location) c.location = c.sites.front().location;
  for (const auto& s : c.sites)
    if (!s.pools.empty() && c.processes != 1)
      core::fail_input(path, Fields::line(root), "processes",
                       fmt::format("site '{}' has pools: one process must own its replicas (processes: 1)", s.name));
  return c;
}

}  // namespace infergrid::serve
