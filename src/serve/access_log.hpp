#pragma once
// The gateway's access log: one JSON line per request, appended with O_APPEND (processes sharing
// the file interleave whole lines), rotated by size: FILE -> FILE.1 -> ... -> FILE.KEEP. A
// process that finds the file rotated by another reopens it.
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace infergrid::serve {

class AccessLog {
 public:
  // path "-": stderr (never rotated); empty: nothing is written. Throws core::InputError when
  // the file cannot be opened.
  AccessLog(std::string path, std::int64_t max_bytes, int keep);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;
  bool enabled() const { return !path_.empty(); }
  void write(const std::string& line);
  std::uint64_t rotations() const { return rotations_; }

 private:
  void open();
  void rotate_if_needed();
  std::string path_;
  std::int64_t max_bytes_;
  int keep_;
  std::FILE* f_ = nullptr;
  std::mutex mu_;
  std::uint64_t rotations_ = 0;
};

}  // namespace infergrid::serve
