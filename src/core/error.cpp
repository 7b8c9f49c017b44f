#include "core/error.hpp"

#include <fmt/format.h>

namespace infergrid::core {

void fail_input(const std::string& file, std::int64_t line, const std::string& field,
                const std::string& message) {
  std::string where = file;
  if (line > 0) where += fmt::format(":{}", line);
  if (!field.empty()) where += fmt::format(": field '{}'", field);
  throw InputError(fmt::format("{}: {}", where, message));
}

void fail_flag(const std::string& flag, const std::string& message) {
  throw InputError(fmt::format("flag --{}: {}", flag, message));
}

}  // namespace infergrid::core
