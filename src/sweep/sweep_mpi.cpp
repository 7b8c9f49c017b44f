// Spreading a sweep's runs over Open MPI ranks: rank 0 hands out run indices one at a time to
// whichever rank asks (the rank that finishes first takes the next run) and gathers each row;
// the other ranks run. Without mpirun (or with one rank) the runs go in turn, without MPI.
#include <mpi.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "sweep/sweep.hpp"

namespace infergrid::sweep {

namespace {
constexpr int kTagResult = 1;  // worker -> root: [index as int64][row text]; index -1: ready
constexpr int kTagWork = 2;    // root -> worker: index as int64; -1: stop

int launched_ranks() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
    if (const char* s = std::getenv(v)) return std::atoi(s);
  return 1;
}
}  // namespace

std::vector<std::string> run_distributed(std::size_t n, const std::function<std::string(std::size_t)>& fn,
                                         bool& is_root, int& ranks) {
  std::vector<std::string> rows(n);
  ranks = launched_ranks();
  if (ranks <= 1) {
    is_root = true;
    for (std::size_t i = 0; i < n; ++i) rows[i] = fn(i);
    return rows;
  }
  MPI_Init(nullptr, nullptr);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  is_root = rank == 0;
  if (rank == 0) {
    std::size_t next = 0, done = 0;
    int stopped = 0;
    while (stopped < ranks - 1) {
      // Open MPI's blocking probe polls a core at full speed; the root has nothing else to do
      // while the runs take minutes, so it looks every 20 ms and leaves the cores to the ranks.
      MPI_Status st;
      for (int flag = 0;;) {
        MPI_Iprobe(MPI_ANY_SOURCE, kTagResult, MPI_COMM_WORLD, &flag, &st);
        if (flag) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      int bytes = 0;
      MPI_Get_count(&st, MPI_CHAR, &bytes);
      std::vector<char> buf(static_cast<std::size_t>(bytes));
      MPI_Recv(buf.data(), bytes, MPI_CHAR, st.MPI_SOURCE, kTagResult, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      std::int64_t idx = -1;
      std::memcpy(&idx, buf.data(), sizeof idx);
      if (idx >= 0) {
        rows[static_cast<std::size_t>(idx)].assign(buf.data() + sizeof idx, buf.size() - sizeof idx);
        ++done;
      }
      std::int64_t give = next < n ? static_cast<std::int64_t>(next++) : -1;
      if (give < 0) ++stopped;
      MPI_Send(&give, 1, MPI_INT64_T, st.MPI_SOURCE, kTagWork, MPI_COMM_WORLD);
    }
    (void)done;
  } else {
    std::int64_t idx = -1;
    std::string row;
    for (;;) {
      std::vector<char> buf(sizeof idx + row.size());
      std::memcpy(buf.data(), &idx, sizeof idx);
      std::memcpy(buf.data() + sizeof idx, row.data(), row.size());
      MPI_Send(buf.data(), static_cast<int>(buf.size()), MPI_CHAR, 0, kTagResult, MPI_COMM_WORLD);
      MPI_Recv(&idx, 1, MPI_INT64_T, 0, kTagWork, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (idx < 0) break;
      row = fn(static_cast<std::size_t>(idx));
    }
    rows.clear();
  }
  MPI_Finalize();
  return rows;
}

}  // namespace infergrid::sweep
