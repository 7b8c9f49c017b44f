#pragma once
// The error policy: bad outside input (files, flags) raises InputError on the config path with
// the file, line and field it concerns; the CLI prints it and exits with code 2.
#include <cstdint>
#include <stdexcept>
#include <string>

namespace infergrid::core {

class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& msg) : std::runtime_error(msg) {}
};

// "FILE:LINE: field 'FIELD': MESSAGE" (line 0 omits the line, an empty field omits the field).
[[noreturn]] void fail_input(const std::string& file, std::int64_t line, const std::string& field,
                             const std::string& message);
// For command-line flags: "flag --NAME: MESSAGE".
[[noreturn]] void fail_flag(const std::string& flag, const std::string& message);

}  // namespace infergrid::core
