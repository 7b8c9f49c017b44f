#pragma once
// Reading the fields of one YAML map with errors that name the file, line and field, refusing
// keys nobody asked for (a typo is an error, not a silent default). Shared by the world, the
// scenario and the gateway's config; include only from .cpp files (it pulls in yaml-cpp).
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <exception>
#include <set>
#include <string>

#include "core/csv.hpp"
#include "core/error.hpp"
#include "core/units.hpp"
#include "workload/generator.hpp"

namespace infergrid::world {

using core::fail_input;

// Reads fields of one YAML map, naming file, line and field in every error, and refusing keys
// it was not asked for (a typo is an error, not a silent default).
class Fields {
 public:
  Fields(const std::string& file, const YAML::Node& node, const std::string& what)
      : file_(file), node_(node) {
    if (!node.IsMap()) fail_input(file, line(node), what, "expected a map");
  }
  ~Fields() noexcept(false) {
    if (std::uncaught_exceptions()) return;
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      const std::string k = it->first.Scalar();
      if (!used_.count(k))
        fail_input(file_, line(it->first), k, fmt::format("unknown key (expected one of: {})", expected()));
    }
  }
  static std::int64_t line(const YAML::Node& n) { return n.Mark().line + 1; }

  bool has(const std::string& k) {
    used_.insert(k);
    return static_cast<bool>(node_[k]);
  }
  YAML::Node node(const std::string& k) {
    used_.insert(k);
    return node_[k];
  }
  double num(const std::string& k, double dflt, bool required = false, double lo = 0,
             double hi = 1e300) {
    used_.insert(k);
    const YAML::Node v = node_[k];
    if (!v) {
      if (required) fail_input(file_, line(node_), k, "missing");
      return dflt;
    }
    double d = 0;
    try {
      d = v.as<double>();
    } catch (const YAML::Exception&) {
      fail_input(file_, line(v), k, "expected a number");
    }
    if (!(d >= lo && d <= hi)) fail_input(file_, line(v), k, fmt::format("must be in [{}, {}]", lo, hi));
    return d;
  }
  int integer(const std::string& k, int dflt, bool required = false, int lo = 0) {
    const double d = num(k, dflt, required, lo, 1e8);
    if (d != std::floor(d)) fail_input(file_, line(node_[k]), k, "expected an integer");
    return static_cast<int>(d);
  }
  bool flag(const std::string& k, bool dflt) {
    used_.insert(k);
    const YAML::Node v = node_[k];
    if (!v) return dflt;
    if (!v.IsScalar() || (v.Scalar() != "true" && v.Scalar() != "false"))
      fail_input(file_, line(v), k, "expected true or false");
    return v.Scalar() == "true";
  }
  std::string str(const std::string& k, const std::string& dflt = {}, bool required = false) {
    used_.insert(k);
    const YAML::Node v = node_[k];
    if (!v) {
      if (required) fail_input(file_, line(node_), k, "missing");
      return dflt;
    }
    if (!v.IsScalar() || v.Scalar().empty()) fail_input(file_, line(v), k, "expected a non-empty string");
    return v.Scalar();
  }
  // Seconds as a number, or with a unit: 90s, 30m, 2h, 1d; times of day as HH:MM.
  core::Ns duration(const std::string& k, core::Ns dflt, bool required = false) {
    used_.insert(k);
    const YAML::Node v = node_[k];
    if (!v) {
      if (required) fail_input(file_, line(node_), k, "missing");
      return dflt;
    }
    const std::string s = v.IsScalar() ? v.Scalar() : "";
    double x = 0, mult = 1;
    std::string body = s;
    if (const auto colon = s.find(':'); colon != std::string::npos) {
      double h = 0, m = 0;
      if (!core::parse_double(s.substr(0, colon), h) || !core::parse_double(s.substr(colon + 1), m) ||
          h < 0 || m < 0 || m >= 60 || h * 3600 + m * 60 > 1e9)
        fail_input(file_, line(v), k, fmt::format("bad time '{}' (HH:MM)", s));
      return core::from_seconds(h * 3600 + m * 60);
    }
    if (!body.empty()) {
      const char u = body.back();
      if (u == 's' || u == 'm' || u == 'h' || u == 'd') {
        mult = u == 's' ? 1 : u == 'm' ? 60 : u == 'h' ? 3600 : 86400;
        body.pop_back();
      }
    }
    if (!core::parse_double(body, x) || x < 0 || x * mult > 1e9)
      fail_input(file_, line(v), k, fmt::format("bad duration '{}' (seconds, or 90s, 30m, 2h, 1d)", s));
    return core::from_seconds(x * mult);
  }
  workload::LengthDist dist(const std::string& k, const std::string& dflt) {
    const std::string spec = str(k, dflt);
    try {
      return workload::LengthDist::parse(spec, k);
    } catch (const core::InputError& e) {
      fail_input(file_, line(node_[k] ? node_[k] : node_), k, e.what());
    }
  }
  std::string expected() const {
    std::string s;
    for (const auto& k : used_) s += (s.empty() ? "" : ", ") + k;
    return s;
  }

 private:
  const std::string& file_;
  YAML::Node node_;
  std::set<std::string> used_;
};


inline YAML::Node load_yaml_file(const std::string& path) {
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    fail_input(path, 0, "", "cannot open");
  } catch (const YAML::Exception& e) {
    fail_input(path, e.mark.line + 1, "", e.msg);
  }
}

}  // namespace infergrid::world
