// MpiSession and SweepSummary.
#include "dist/mpi_util.hpp"

#include <eplb/sweep.hpp>

#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <numeric>

namespace eplb {

int rank_from_launcher() {
    for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
        if (const char* value = std::getenv(name); value && *value) return std::atoi(value);
    return 0;
}

MpiSession::MpiSession() {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (initialised) return;
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    finalize_ = true;
}

MpiSession::~MpiSession() {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (finalize_ && !finalised) MPI_Finalize();
}

int MpiSession::rank() const { return dist::rank_of(MPI_COMM_WORLD); }

int MpiSession::size() const { return dist::size_of(MPI_COMM_WORLD); }

int MpiSession::agree(int code, const std::string& message) const {
    return dist::agree_on_code(code, message, MPI_COMM_WORLD);
}

void MpiSession::abort(int code) const {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this is for the compiler
}

double SweepSummary::plans_per_second() const {
    return wall_seconds > 0 ? static_cast<double>(planned) / wall_seconds : 0.0;
}

double SweepSummary::rank_imbalance() const {
    if (rank_busy_seconds.empty()) return 1.0;
    const double most = *std::max_element(rank_busy_seconds.begin(), rank_busy_seconds.end());
    const double mean = std::accumulate(rank_busy_seconds.begin(), rank_busy_seconds.end(), 0.0) /
                        static_cast<double>(rank_busy_seconds.size());
    return mean > 0 ? most / mean : 1.0;
}

double SweepSummary::write_share() const {
    const double busy = std::accumulate(rank_busy_seconds.begin(), rank_busy_seconds.end(), 0.0) + commit_seconds;
    return busy > 0 ? (write_seconds + commit_seconds) / busy : 0.0;
}

std::string SweepSummary::to_line() const {
    auto fixed = [](double v, int digits) {
        char text[32];
        std::snprintf(text, sizeof text, "%.*f", digits, v);
        return std::string(text);
    };
    std::string busy;
    for (const double b : rank_busy_seconds) busy += (busy.empty() ? "" : ",") + fixed(b, 3);
    return "archive=" + output + " plans=" + std::to_string(plans_in_archive) + " planned=" + std::to_string(planned) +
           " already_done=" + std::to_string(already_done) + " failures=" + std::to_string(failures) +
           " wall_s=" + fixed(wall_seconds, 3) + " plans_per_s=" + fixed(plans_per_second(), 2) +
           " ranks=" + std::to_string(ranks) + " rank_busy_s=" + (busy.empty() ? "-" : busy) +
           " rank_imbalance=" + fixed(rank_imbalance(), 3) + " write_s=" + fixed(write_seconds, 3) +
           " commit_s=" + fixed(commit_seconds, 3) + " write_share=" + fixed(write_share(), 3) +
           " exit_code=" + std::to_string(exit_code);
}

}  // namespace eplb
