#pragma once
// Line-oriented reading of outside files: streamed, never held whole, with line numbers kept
// for error messages, and CSV field splitting (RFC 4180 quotes allowed).
#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace infergrid::core {

class LineReader {
 public:
  explicit LineReader(const std::string& path);
  // Next line without its end-of-line; false at end of file.
  bool next(std::string& line);
  std::int64_t line_number() const { return line_no_; }
  const std::string& path() const { return path_; }
  std::uint64_t bytes_read() const { return bytes_; }
  std::uint64_t size() const { return size_; }

 private:
  std::string path_;
  std::ifstream in_;
  std::int64_t line_no_ = 0;
  std::uint64_t bytes_ = 0;
  std::uint64_t size_ = 0;
};

// Splits one CSV record. Returns false on an unterminated quote.
bool split_csv(std::string_view line, std::vector<std::string>& out);

// Strict numeric parsing: the whole field must be a number.
bool parse_int(std::string_view s, std::int64_t& out);
bool parse_double(std::string_view s, double& out);
std::string_view trim(std::string_view s);

}  // namespace infergrid::core
