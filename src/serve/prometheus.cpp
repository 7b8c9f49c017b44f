#include "serve/prometheus.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>

namespace infergrid::serve {

void Histogram::observe(double v) {
  const auto i = static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::write(std::string& out, const std::string& name, const std::string& help,
                      const std::string& labels, bool header) const {
  if (header) out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  const std::string sep = labels.empty() ? "" : ",";
  std::uint64_t cum = 0;
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, bounds_[i], cum);
  }
  cum += counts_.back();
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, cum);
  out += fmt::format("{}_sum{{{}}} {}\n{}_count{{{}}} {}\n", name, labels, sum_, name, labels, count_);
}

void write_gauge(std::string& out, const std::string& name, const std::string& help, const std::string& labels,
                 double v, const char* type) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{}{{{}}} {}\n", name, help, name, type, name, labels, v);
}

bool scrape_value(std::string_view text, std::string_view name, double& out) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty() || line[0] == '#' || line.substr(0, name.size()) != name) continue;
    std::size_t p = name.size();
    if (p < line.size() && line[p] == '{') {
      const std::size_t close = line.find('}', p);
      if (close == std::string_view::npos) continue;
      p = close + 1;
    } else if (p < line.size() && line[p] != ' ') {
      continue;  // a longer name with this prefix
    }
    while (p < line.size() && line[p] == ' ') ++p;
    const std::string v(line.substr(p, line.find(' ', p) - p));
    char* end = nullptr;
    out = std::strtod(v.c_str(), &end);
    if (end != v.c_str()) return true;
  }
  return false;
}

}  // namespace infergrid::serve
