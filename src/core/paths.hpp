#pragma once
#include <string>

namespace infergrid::core {
// The project's data/ folder: $INFERGRID_DATA if set, else the source tree's data/.
std::string data_dir();
// The front-end parts installed from npm (web/node_modules): $INFERGRID_WEB if set, else the
// source tree's web/.
std::string web_dir();
}  // namespace infergrid::core
