#include "dist/mpi_util.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <thread>

namespace eplb::dist {
namespace {

std::vector<int> offsets_of(const std::vector<int>& sizes) {
    std::vector<int> offsets(sizes.size(), 0);
    for (std::size_t i = 1; i < sizes.size(); ++i) offsets[i] = offsets[i - 1] + sizes[i - 1];
    return offsets;
}

std::vector<std::string> split_at(const std::string& all, const std::vector<int>& sizes, const std::vector<int>& offsets) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < sizes.size(); ++i) out.push_back(all.substr(static_cast<std::size_t>(offsets[i]), sizes[i]));
    return out;
}

int env_int(const char* name) {
    const char* value = std::getenv(name);
    if (!value || !*value) return -1;
    char* end = nullptr;
    const long v = std::strtol(value, &end, 10);
    return *end == '\0' && v >= 0 ? static_cast<int>(v) : -1;
}

}  // namespace

int rank_of(MPI_Comm comm) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    return rank;
}

int size_of(MPI_Comm comm) {
    int size = 1;
    MPI_Comm_size(comm, &size);
    return size;
}

std::string broadcast_string(const std::string& text, int root, MPI_Comm comm) {
    long long size = static_cast<long long>(text.size());
    MPI_Bcast(&size, 1, MPI_LONG_LONG, root, comm);
    std::string out = rank_of(comm) == root ? text : std::string(static_cast<std::size_t>(size), '\0');
    if (size > 0) MPI_Bcast(out.data(), static_cast<int>(size), MPI_CHAR, root, comm);
    return out;
}

std::vector<std::string> allgather_strings(const std::string& text, MPI_Comm comm) {
    const int n = size_of(comm);
    int mine = static_cast<int>(text.size());
    std::vector<int> sizes(static_cast<std::size_t>(n));
    MPI_Allgather(&mine, 1, MPI_INT, sizes.data(), 1, MPI_INT, comm);
    const std::vector<int> offsets = offsets_of(sizes);
    std::string all(static_cast<std::size_t>(offsets.back() + sizes.back()), '\0');
    MPI_Allgatherv(text.data(), mine, MPI_CHAR, all.data(), sizes.data(), offsets.data(), MPI_CHAR, comm);
    return split_at(all, sizes, offsets);
}

std::vector<std::string> gather_strings(const std::string& text, int root, MPI_Comm comm) {
    const int n = size_of(comm);
    const bool is_root = rank_of(comm) == root;
    int mine = static_cast<int>(text.size());
    std::vector<int> sizes(is_root ? static_cast<std::size_t>(n) : 0);
    MPI_Gather(&mine, 1, MPI_INT, sizes.data(), 1, MPI_INT, root, comm);
    if (!is_root) {
        MPI_Gatherv(text.data(), mine, MPI_CHAR, nullptr, nullptr, nullptr, MPI_CHAR, root, comm);
        return {};
    }
    const std::vector<int> offsets = offsets_of(sizes);
    std::string all(static_cast<std::size_t>(offsets.back() + sizes.back()), '\0');
    MPI_Gatherv(text.data(), mine, MPI_CHAR, all.data(), sizes.data(), offsets.data(), MPI_CHAR, root, comm);
    return split_at(all, sizes, offsets);
}

int agree_on_code(int code, const std::string& message, MPI_Comm comm) {
    int highest = 0;
    MPI_Allreduce(&code, &highest, 1, MPI_INT, MPI_MAX, comm);
    if (highest == 0) return 0;
    const int rank = rank_of(comm);
    int candidate = code == highest ? rank : size_of(comm);
    int speaker = 0;
    MPI_Allreduce(&candidate, &speaker, 1, MPI_INT, MPI_MIN, comm);
    if (rank == speaker && !message.empty()) print_error_lines(message);
    return highest;
}

void wait_idly(MPI_Request& request) {
    for (int polls = 0;; ++polls) {
        int done = 0;
        MPI_Test(&request, &done, MPI_STATUS_IGNORE);
        if (done) return;
        // Quick at first (a short wait costs little), then at most every 2 ms.
        std::this_thread::sleep_for(std::chrono::microseconds(polls < 100 ? 50 : 2000));
    }
}

void idle_barrier(MPI_Comm comm) {
    MPI_Request request;
    MPI_Ibarrier(comm, &request);
    wait_idly(request);
}

int local_rank() {
    for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"})
        if (const int v = env_int(name); v >= 0) return v;
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    const int rank = rank_of(node);
    MPI_Comm_free(&node);
    return rank;
}

void print_error_lines(const std::string& message) {
    std::string out;
    std::istringstream lines(message);
    for (std::string line; std::getline(lines, line);) out += "eplb: error: " + line + "\n";
    std::fputs(out.c_str(), stderr);
    std::fflush(stderr);
}

}  // namespace eplb::dist
