// Runs a command line through the shell, as a user would, and keeps its exit code and output; or
// starts one in the background, to kill it midway (the kill-and-resume tests).
#pragma once

#include "support/temp_dir.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace eplb::test {

/// What a command did: its exit code (-1 when it did not exit normally) and its output.
struct CommandResult {
    int code = -1;
    std::string out, err;
};

/// `s` in single quotes for a POSIX shell.
inline std::string quoted(const std::string& s) {
    std::string q = "'";
    for (const char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

/// Runs `argv` (each word quoted) with stdout and stderr redirected to files in `dir`.
inline CommandResult run_command(const std::vector<std::string>& argv, const TempDir& dir) {
    std::string command;
    for (const std::string& a : argv) command += quoted(a) + " ";
    command += ">" + quoted(dir / "stdout.txt") + " 2>" + quoted(dir / "stderr.txt");
    const int status = std::system(command.c_str());
    return CommandResult{WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_text(dir / "stdout.txt"),
                         read_text(dir / "stderr.txt")};
}

/// Starts `argv` (argv[0] a path) in a session of its own (so that all the processes it starts can
/// be killed together), its output discarded; its pid, -1 when it cannot fork.
inline pid_t start_in_background(std::vector<std::string> argv) {
    std::vector<char*> words;
    for (std::string& a : argv) words.push_back(a.data());
    words.push_back(nullptr);
    const pid_t pid = fork();
    if (pid == 0) {
        setsid();
        std::freopen("/dev/null", "w", stdout);
        std::freopen("/dev/null", "w", stderr);
        execv(words[0], words.data());
        _exit(127);
    }
    return pid;
}

/// Polls every 5 ms until `ready()` holds (false) or the process `pid` has exited (true: its wait
/// status in `status`); false after `limit` as well.
template <class Ready>
bool exits_before(pid_t pid, Ready ready, std::chrono::seconds limit, int& status) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid) return true;
        if (ready()) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
}

/// The parts (`*.h5`) an archive writer has flushed into `dir` (`ARCHIVE.parts`; 0 when it is absent).
inline std::size_t parts_in(const std::string& dir) {
    std::size_t n = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator(); ++it)
        n += it->path().extension() == ".h5";
    return n;
}

}  // namespace eplb::test
