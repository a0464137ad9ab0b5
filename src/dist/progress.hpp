// Progress of a sweep: every rank reports the items it has finished; rank 0 shows done/total,
// plans per second and the time left on stderr.
#pragma once

#include <mpi.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <vector>

namespace eplb::dist {

class Progress {
public:
    /// `total` items for all ranks together. Rank 0 prints when `show`: rewriting one line on a
    /// terminal, else one line every `interval_seconds`. Reports travel whether or not they are
    /// shown, so that the protocol is the same in every run.
    Progress(MPI_Comm comm, std::int64_t total, bool show, bool terminal, double interval_seconds);
    ~Progress();
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;

    /// This rank has finished `done` items so far. Other ranks send rank 0 at most one report per
    /// interval; rank 0 takes the reports that arrived and prints when one is due.
    void update(std::int64_t done);

    /// This rank has finished all its items: the others send their last report, rank 0 waits for
    /// every rank's last report (printing as they come) and prints the final line.
    void finish(std::int64_t done);

private:
    using Clock = std::chrono::steady_clock;

    void send(std::int64_t done, bool last);
    void take_reports(bool wait_for_all);
    void print(bool last);

    MPI_Comm comm_;
    int rank_ = 0;
    std::int64_t total_ = 0;
    bool show_ = false;
    bool terminal_ = false;
    double interval_ = 1.0;
    Clock::time_point start_, last_report_;
    // Rank 0: each rank's count and whether its last report came.
    std::vector<std::int64_t> done_;
    std::vector<bool> finished_;
    // Other ranks: reports in flight (MPI needs their buffers until they are sent).
    std::deque<std::array<long long, 2>> outbox_;
    std::vector<MPI_Request> requests_;
};

}  // namespace eplb::dist
