#pragma once
// The front-end parts the pages inline (Vega, Vega-Lite, vega-embed, world-atlas), read from
// core::web_dir()/node_modules; InputError naming the file when one is missing.
#include <string>

namespace infergrid::twin {

std::string read_asset(const std::string& rel);
// Text placed inside <script> must not close it: "</script" (any case) becomes "<\/script".
std::string script_safe(std::string s);

}  // namespace infergrid::twin
