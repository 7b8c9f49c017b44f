#include "workload/trace.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "core/csv.hpp"
#include "core/error.hpp"

namespace infergrid::workload {

using core::fail_input;
using core::Ns;

TraceFormat parse_trace_format(const std::string& name) {
  if (name == "azure") return TraceFormat::kAzure;
  if (name == "azure-mm") return TraceFormat::kAzureMm;
  if (name == "burstgpt") return TraceFormat::kBurstGpt;
  if (name == "mooncake") return TraceFormat::kMooncake;
  core::fail_flag("trace-format",
                  fmt::format("unknown format '{}' (azure, azure-mm, burstgpt, mooncake)", name));
}

TraceFormat detect_trace_format(const std::string& path) {
  core::LineReader in(path);
  std::string line;
  if (!in.next(line)) fail_input(path, 1, "", "empty trace");
  if (!line.empty() && line[0] == '{') return TraceFormat::kMooncake;
  if (line.find("NumImages") != std::string::npos) return TraceFormat::kAzureMm;
  if (line.find("ContextTokens") != std::string::npos) return TraceFormat::kAzure;
  if (line.find("Request tokens") != std::string::npos) return TraceFormat::kBurstGpt;
  fail_input(path, 1, "", "unrecognized trace header; give --trace-format");
}

namespace {

// Days from 1970-01-01 to y-m-d (proleptic Gregorian), after H. Hinnant's days_from_civil.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

}  // namespace

bool parse_timestamp(std::string_view s, Ns& out) {
  s = core::trim(s);
  int y, mo, d, h, mi, sec;
  if (!digits(s, 0, 4, y) || s.size() < 19 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
      !digits(s, 8, 2, d) || (s[10] != ' ' && s[10] != 'T') || !digits(s, 11, 2, h) ||
      s[13] != ':' || !digits(s, 14, 2, mi) || s[16] != ':' || !digits(s, 17, 2, sec))
    return false;
  // Years bound the arithmetic: nanoseconds since 1970 fit in 64 bits until 2262.
  if (y < 1970 || y > 2200 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
    return false;
  std::size_t pos = 19;
  Ns frac = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    Ns scale = 100'000'000;
    std::size_t nd = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      frac += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
      ++nd;
    }
    if (nd == 0) return false;
  }
  Ns offset_s = 0;
  if (pos < s.size()) {
    if (s[pos] == 'Z' && pos + 1 == s.size()) {
      ++pos;
    } else if ((s[pos] == '+' || s[pos] == '-') && s.size() == pos + 6 && s[pos + 3] == ':') {
      int oh, om;
      if (!digits(s, pos + 1, 2, oh) || !digits(s, pos + 4, 2, om)) return false;
      offset_s = (oh * 3600 + om * 60) * (s[pos] == '+' ? 1 : -1);
      pos = s.size();
    } else {
      return false;
    }
  }
  const std::int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  out = ((days * 86400 + h * 3600 + mi * 60 + sec) - offset_s) * core::kNsPerSec + frac;
  return true;
}

namespace {

// Common part of the readers: the file, ordering of arrivals relative to the first one.
class ReaderBase : public RequestSource {
 public:
  explicit ReaderBase(const std::string& path) : in_(path) {}
  double progress() const override {
    return in_.size() ? double(in_.bytes_read()) / double(in_.size()) : -1;
  }

 protected:
  [[noreturn]] void fail(const std::string& field, const std::string& msg) {
    fail_input(in_.path(), in_.line_number(), field, msg);
  }
  // Sets the arrival relative to the first record; arrivals must not go back in time.
  void stamp(Request& r, Ns absolute, const char* field) {
    if (!started_) {
      origin_ = absolute;
      started_ = true;
    }
    const Ns t = absolute - origin_;
    if (t < last_) fail(field, "timestamps must be non-decreasing");
    last_ = t;
    r.arrival = t;
    r.id = next_id_++;
  }
  std::int32_t tokens(const std::string& s, const char* field, bool allow_zero) {
    std::int64_t v = 0;
    if (!core::parse_int(s, v) || v < 0 || v > 100'000'000)
      fail(field, fmt::format("expected a token count, got '{}'", s));
    if (v == 0 && !allow_zero) fail(field, "must be at least 1");
    // A request always yields at least one token (the one its prefill samples).
    return static_cast<std::int32_t>(std::max<std::int64_t>(v, 1));
  }

  core::LineReader in_;
  std::string line_;
  std::vector<std::string> fields_;

 private:
  bool started_ = false;
  Ns origin_ = 0, last_ = 0;
  std::uint64_t next_id_ = 0;
};

class CsvTrace final : public ReaderBase {
 public:
  CsvTrace(const std::string& path, TraceFormat f) : ReaderBase(path), format_(f) {
    if (!in_.next(line_)) fail("", "empty trace");
    core::split_csv(line_, fields_);
    std::map<std::string, int> col;
    for (std::size_t i = 0; i < fields_.size(); ++i)
      col[std::string(core::trim(fields_[i]))] = static_cast<int>(i);
    auto need = [&](const char* name) {
      auto it = col.find(name);
      if (it == col.end()) fail(name, "missing column in header");
      return it->second;
    };
    if (f == TraceFormat::kBurstGpt) {
      ts_ = need("Timestamp");
      in_tok_ = need("Request tokens");
      out_tok_ = need("Response tokens");
    } else {
      ts_ = need("TIMESTAMP");
      in_tok_ = need("ContextTokens");
      out_tok_ = need("GeneratedTokens");
      if (f == TraceFormat::kAzureMm) img_ = need("NumImages");
    }
    ncols_ = static_cast<int>(fields_.size());
  }

  bool next(Request& r) override {
    while (in_.next(line_)) {
      if (core::trim(line_).empty()) continue;
      if (!core::split_csv(line_, fields_)) fail("", "unterminated quote");
      if (static_cast<int>(fields_.size()) != ncols_)
        fail("", fmt::format("expected {} fields, found {}", ncols_, fields_.size()));
      r = Request{};
      Ns t = 0;
      if (format_ == TraceFormat::kBurstGpt) {
        double s = 0;
        if (!core::parse_double(fields_[ts_], s) || s < 0 || s > 1e9)
          fail("Timestamp", fmt::format("expected seconds, got '{}'", fields_[ts_]));
        t = core::from_seconds(s);
        stamp(r, t, "Timestamp");
        r.prompt_tokens = tokens(fields_[in_tok_], "Request tokens", true);
        r.output_tokens = tokens(fields_[out_tok_], "Response tokens", true);
      } else {
        if (!parse_timestamp(fields_[ts_], t))
          fail("TIMESTAMP", fmt::format("expected 'YYYY-MM-DD HH:MM:SS.f', got '{}'", fields_[ts_]));
        stamp(r, t, "TIMESTAMP");
        r.prompt_tokens = tokens(fields_[in_tok_], "ContextTokens", true);
        r.output_tokens = tokens(fields_[out_tok_], "GeneratedTokens", true);
        if (img_ >= 0) {
          std::int64_t n = 0;
          if (!core::parse_int(fields_[img_], n) || n < 0 || n > 10000)
            fail("NumImages", fmt::format("expected an image count, got '{}'", fields_[img_]));
          r.images = static_cast<std::int16_t>(n);
        }
      }
      return true;
    }
    return false;
  }

 private:
  TraceFormat format_;
  int ts_ = -1, in_tok_ = -1, out_tok_ = -1, img_ = -1, ncols_ = 0;
};

class MooncakeTrace final : public ReaderBase {
 public:
  using ReaderBase::ReaderBase;
  bool next(Request& r) override {
    while (in_.next(line_)) {
      if (core::trim(line_).empty()) continue;
      r = Request{};
      Ns t_ms = 0;
      const std::string err = parse_mooncake_line(line_, r, t_ms);
      if (!err.empty()) {
        const auto colon = err.find(':');
        fail(err.substr(0, colon), err.substr(colon + 2));
      }
      stamp(r, t_ms * 1'000'000, "timestamp");
      return true;
    }
    return false;
  }
};

}  // namespace

std::string parse_mooncake_line(std::string_view line, Request& r, Ns& t_ms) {
  const auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return ": not a JSON object";
  auto int_field = [&](const char* name, std::int64_t lo, std::int64_t& out) -> std::string {
    auto it = j.find(name);
    if (it == j.end()) return fmt::format("{}: missing", name);
    if (!it->is_number_integer() && !it->is_number_unsigned()) {
      if (it->is_number_float() && it->get<double>() == std::floor(it->get<double>()) &&
          std::fabs(it->get<double>()) < 9e15) {
        out = static_cast<std::int64_t>(it->get<double>());
      } else {
        return fmt::format("{}: expected an integer", name);
      }
    } else {
      out = it->get<std::int64_t>();
    }
    if (out < lo || out > 100'000'000'000'000LL) return fmt::format("{}: out of range", name);
    return {};
  };
  std::int64_t ts = 0, in = 0, outl = 0;
  if (auto e = int_field("timestamp", 0, ts); !e.empty()) return e;
  if (ts > 1'000'000'000'000LL) return "timestamp: out of range (milliseconds, at most 1e12)";
  if (auto e = int_field("input_length", 0, in); !e.empty()) return e;
  if (auto e = int_field("output_length", 0, outl); !e.empty()) return e;
  if (in > 100'000'000) return "input_length: out of range";
  if (outl > 100'000'000) return "output_length: out of range";
  t_ms = ts;
  r.prompt_tokens = static_cast<std::int32_t>(std::max<std::int64_t>(in, 1));
  r.output_tokens = static_cast<std::int32_t>(std::max<std::int64_t>(outl, 1));
  r.hash_block_tokens = 512;  // Mooncake hashes 512-token blocks
  if (auto it = j.find("hash_ids"); it != j.end()) {
    if (!it->is_array()) return "hash_ids: expected an array";
    r.block_hashes.reserve(it->size());
    for (const auto& h : *it) {
      if (!h.is_number_unsigned() && !(h.is_number_integer() && h.get<std::int64_t>() >= 0))
        return "hash_ids: expected non-negative integers";
      r.block_hashes.push_back(h.get<std::uint64_t>());
    }
    const std::size_t max_blocks = (static_cast<std::size_t>(r.prompt_tokens) + 511) / 512;
    if (r.block_hashes.size() > max_blocks)
      return fmt::format("hash_ids: {} blocks exceed input_length {}", r.block_hashes.size(),
                         r.prompt_tokens);
  }
  return {};
}

std::unique_ptr<RequestSource> open_trace(const std::string& path, TraceFormat format) {
  if (format == TraceFormat::kMooncake) return std::make_unique<MooncakeTrace>(path);
  return std::make_unique<CsvTrace>(path, format);
}

}  // namespace infergrid::workload
