#pragma once
// The classes of inference every module shares: the twin's traffic classes, the engine's
// priority scheduling, the gateway's admission and the controllers' shed levels.
#include <cstdint>

namespace infergrid::core {

enum class Priority : std::int8_t { kCritical = 0, kInteractive = 1, kBatch = 2 };
constexpr int kPriorityCount = 3;

}  // namespace infergrid::core
