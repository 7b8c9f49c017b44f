#pragma once
// A test's input written to a file of the system's temporary folder, named for the test binary's
// process so that binaries run side by side (ctest -j) do not share one.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace infergrid::testing_util {

inline std::string write_temp(const std::string& name, const std::string& text) {
  const auto p = std::filesystem::temp_directory_path() / ("infergrid-test-" + std::to_string(::getpid()) + "-" + name);
  std::ofstream(p) << text;
  return p.string();
}

}  // namespace infergrid::testing_util
