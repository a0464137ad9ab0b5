// Small helpers over MPI for the sweep: strings across ranks, agreeing on errors, the local rank.
#pragma once

#include <mpi.h>

#include <string>
#include <vector>

namespace eplb::dist {

/// Rank and size of `comm`.
int rank_of(MPI_Comm comm);
int size_of(MPI_Comm comm);

/// `text` of rank `root`, on every rank of `comm`.
std::string broadcast_string(const std::string& text, int root, MPI_Comm comm);

/// Every rank's `text`, in rank order, on every rank of `comm`.
std::vector<std::string> allgather_strings(const std::string& text, MPI_Comm comm);

/// Every rank's `text`, in rank order, on `root` (empty elsewhere).
std::vector<std::string> gather_strings(const std::string& text, int root, MPI_Comm comm);

/// The highest `code` of all ranks of `comm`. When it is not 0, the lowest rank with that code
/// prints `message` on stderr, one "eplb: error: " line per line of it.
int agree_on_code(int code, const std::string& message, MPI_Comm comm);

/// Waits for `request` without spinning: MPI's own waits poll at full speed, which takes a core
/// from the ranks still working (more ranks than cores, or a shared machine) while this one has
/// nothing to do. Polls with short sleeps instead.
void wait_idly(MPI_Request& request);

/// A barrier that waits like wait_idly.
void idle_barrier(MPI_Comm comm);

/// This process's rank among the ranks of its node: OMPI_COMM_WORLD_LOCAL_RANK or SLURM_LOCALID
/// when the launcher sets them, else its rank in MPI_COMM_WORLD's shared-memory split (collective).
int local_rank();

/// Prints "eplb: error: <line>" on stderr for each line of `message`, as one write.
void print_error_lines(const std::string& message);

}  // namespace eplb::dist
