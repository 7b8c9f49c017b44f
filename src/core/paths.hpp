#pragma once
#include <string>

namespace infergrid::core {
// The project's data/ folder: $INFERGRID_DATA if set, else the source tree's data/.
std::string data_dir();
}  // namespace infergrid::core
