#include "dist/progress.hpp"

#include "dist/mpi_util.hpp"

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <string>
#include <thread>

namespace eplb::dist {
namespace {

constexpr int kProgressTag = 7001;

std::string duration_text(double seconds) {
    const auto s = static_cast<long long>(seconds + 0.5);
    char text[32];
    if (s >= 3600)
        std::snprintf(text, sizeof text, "%lldh%02lldm", s / 3600, s / 60 % 60);
    else if (s >= 60)
        std::snprintf(text, sizeof text, "%lldm%02llds", s / 60, s % 60);
    else
        std::snprintf(text, sizeof text, "%llds", s);
    return text;
}

}  // namespace

Progress::Progress(MPI_Comm comm, std::int64_t total, bool show, bool terminal, double interval_seconds)
    : comm_(comm),
      rank_(rank_of(comm)),
      total_(total),
      show_(show),
      terminal_(terminal),
      interval_(interval_seconds),
      start_(Clock::now()),
      last_report_(start_) {
    if (rank_ == 0) {
        done_.assign(static_cast<std::size_t>(size_of(comm)), 0);
        finished_.assign(done_.size(), false);
    }
}

Progress::~Progress() {
    if (!requests_.empty()) MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
}

void Progress::update(std::int64_t done) {
    const bool due = std::chrono::duration<double>(Clock::now() - last_report_).count() >= interval_;
    if (rank_ != 0) {
        if (due) send(done, false);
        return;
    }
    done_[0] = done;
    take_reports(false);
    if (due) print(false);
}

void Progress::finish(std::int64_t done) {
    if (rank_ != 0) {
        send(done, true);
        MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
        requests_.clear();
        outbox_.clear();
        return;
    }
    done_[0] = done;
    finished_[0] = true;
    take_reports(true);
    print(true);
}

void Progress::send(std::int64_t done, bool last) {
    last_report_ = Clock::now();
    // Reports already sent free their buffers (oldest first, as they were queued).
    while (!requests_.empty()) {
        int sent = 0;
        MPI_Test(&requests_.front(), &sent, MPI_STATUS_IGNORE);
        if (!sent) break;
        requests_.erase(requests_.begin());
        outbox_.pop_front();
    }
    outbox_.push_back({static_cast<long long>(done), last ? 1LL : 0LL});
    requests_.emplace_back();
    MPI_Isend(outbox_.back().data(), 2, MPI_LONG_LONG, 0, kProgressTag, comm_, &requests_.back());
}

void Progress::take_reports(bool wait_for_all) {
    for (;;) {
        const bool all_in = std::all_of(finished_.begin(), finished_.end(), [](bool f) { return f; });
        if (wait_for_all && all_in) return;
        int arrived = 0;
        MPI_Status status;
        MPI_Iprobe(MPI_ANY_SOURCE, kProgressTag, comm_, &arrived, &status);
        if (!arrived && !wait_for_all) return;
        if (!arrived) {  // waiting for the others to finish: idly, not spinning (wait_idly)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            continue;
        }
        long long report[2] = {0, 0};
        MPI_Recv(report, 2, MPI_LONG_LONG, status.MPI_SOURCE, kProgressTag, comm_, MPI_STATUS_IGNORE);
        done_[static_cast<std::size_t>(status.MPI_SOURCE)] = report[0];
        if (report[1]) finished_[static_cast<std::size_t>(status.MPI_SOURCE)] = true;
        if (wait_for_all && std::chrono::duration<double>(Clock::now() - last_report_).count() >= interval_) print(false);
    }
}

void Progress::print(bool last) {
    last_report_ = Clock::now();
    if (!show_) return;
    const std::int64_t done = std::accumulate(done_.begin(), done_.end(), std::int64_t{0});
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
    char line[160];
    const double percent = total_ > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(total_) : 100.0;
    const std::string eta = last ? "done in " + duration_text(elapsed)
                                 : rate > 0 ? "ETA " + duration_text(static_cast<double>(total_ - done) / rate) : "ETA -";
    std::snprintf(line, sizeof line, "eplb sweep: %lld/%lld plans (%.1f %%), %.2f plans/s, %s",
                  static_cast<long long>(done), static_cast<long long>(total_), percent, rate, eta.c_str());
    if (terminal_)
        std::fprintf(stderr, "\r%-78s%s", line, last ? "\n" : "");
    else
        std::fprintf(stderr, "%s\n", line);
    std::fflush(stderr);
}

}  // namespace eplb::dist
