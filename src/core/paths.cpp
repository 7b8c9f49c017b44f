#include "core/paths.hpp"

#include <cstdlib>

namespace infergrid::core {
std::string data_dir() {
  if (const char* env = std::getenv("INFERGRID_DATA"); env && *env) return env;
  return INFERGRID_DATA_DIR;
}
std::string web_dir() {
  if (const char* env = std::getenv("INFERGRID_WEB"); env && *env) return env;
  return INFERGRID_WEB_DIR;
}
}  // namespace infergrid::core
