// The fast exact MLU and max-flow allocation: the column-generation master (cg_master.hpp) run to
// its optimum.
#include "te/cg_master.hpp"

namespace infergrid::te {

using namespace cg_detail;

Allocation solve_column_generation(const Problem& p, Objective o, const Allocation* warm) {
  validate(p, o);
  const auto t0 = std::chrono::steady_clock::now();
  Master master(p, o, warm);
  const int rounds = master.run();
  Allocation a = master.extract();
  a.method = "fast";
  a.iterations = rounds;
  a.value = o == Objective::kMlu ? a.mlu(*p.graph) : a.total();
  a.bound = a.value;
  a.solve_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return a;
}

}  // namespace infergrid::te
