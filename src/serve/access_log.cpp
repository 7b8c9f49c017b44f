#include "serve/access_log.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "core/error.hpp"

namespace infergrid::serve {

AccessLog::AccessLog(std::string path, std::int64_t max_bytes, int keep) : path_(std::move(path)), max_bytes_(max_bytes), keep_(keep) {
  if (path_.empty()) return;
  if (path_ == "-") {
    f_ = stderr;
    return;
  }
  open();
  if (!f_) core::fail_input(path_, 0, "access_log", "cannot open for appending");
}

AccessLog::~AccessLog() {
  if (f_ && f_ != stderr) std::fclose(f_);
}

void AccessLog::open() {
  if (f_) std::fclose(f_);
  f_ = std::fopen(path_.c_str(), "ab");
}

// Rotation is decided under an flock on FILE.lock, so that processes sharing the log rotate it
// once; each then notices (by inode) that its descriptor points at an old file and reopens.
void AccessLog::rotate_if_needed() {
  struct stat mine {}, cur {};
  const bool have_mine = fstat(fileno(f_), &mine) == 0;
  const bool have_cur = stat(path_.c_str(), &cur) == 0;
  if (!have_cur || !have_mine || cur.st_ino != mine.st_ino) {
    open();  // rotated (or removed) by someone else
    if (!f_ || fstat(fileno(f_), &mine) != 0) return;
  }
  if (mine.st_size < max_bytes_) return;
  const std::string lock = path_ + ".lock";
  const int fd = ::open(lock.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (fd < 0) return;
  if (flock(fd, LOCK_EX) == 0) {
    struct stat again {};
    if (stat(path_.c_str(), &again) == 0 && again.st_ino == mine.st_ino && again.st_size >= max_bytes_) {
      for (int i = keep_ - 1; i >= 1; --i)
        std::rename((path_ + "." + std::to_string(i)).c_str(), (path_ + "." + std::to_string(i + 1)).c_str());
      std::rename(path_.c_str(), (path_ + ".1").c_str());
      ++rotations_;
    }
    flock(fd, LOCK_UN);
  }
  ::close(fd);
  open();
}

void AccessLog::write(const std::string& line) {
  if (path_.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (f_ != stderr) {
    if (!f_) open();
    if (!f_) return;
    rotate_if_needed();
    if (!f_) return;
  }
  std::string l = line;
  l += '\n';
  std::fwrite(l.data(), 1, l.size(), f_);
  std::fflush(f_);
}

}  // namespace infergrid::serve
