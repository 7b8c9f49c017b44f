#pragma once
// `infergrid demo`: a local fabric of emulated sites behind the gateway, mixed traffic, a site
// failure, and a report of where requests went and why.
#include <string>

namespace infergrid::serve {

struct DemoOptions {
  int sites = 4;
  int requests = 300;
  int concurrency = 16;
  std::string policy = "nearest";
};

int run_demo(const DemoOptions& o);

}  // namespace infergrid::serve
