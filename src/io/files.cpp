#include "io/files.hpp"

#include <eplb/errors.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

namespace eplb::io {
namespace {

std::string reason() { return std::strerror(errno); }

void sync_path(const std::string& path, int flags) {
    const int fd = ::open(path.c_str(), flags);
    if (fd < 0) throw IoError(path + ": cannot open to flush it to disk: " + reason());
    const int rc = ::fsync(fd);
    const std::string why = rc != 0 ? reason() : "";
    ::close(fd);
    // Some file systems do not flush directories (EINVAL): nothing more can be done there.
    if (rc != 0 && why != std::strerror(EINVAL)) throw IoError(path + ": cannot flush to disk: " + why);
}

}  // namespace

std::string read_file_bytes(const std::string& path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) throw FormatError(path + ": is a directory, not a file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FormatError(path + ": cannot open the file (missing or unreadable)");
    std::ostringstream bytes;
    bytes << in.rdbuf();
    if (in.bad()) throw FormatError(path + ": cannot read the file");
    return bytes.str();
}

std::string temporary_path(const std::string& path) { return path + ".tmp." + std::to_string(::getpid()); }

void sync_directory(const std::string& path) { sync_path(path.empty() ? "." : path, O_RDONLY | O_DIRECTORY); }

void durable_rename(const std::string& from, const std::string& to) {
    sync_path(from, O_RDONLY);
    if (std::rename(from.c_str(), to.c_str()) != 0)
        throw IoError(to + ": cannot move " + from + " into place: " + reason());
    sync_directory(std::filesystem::path(to).parent_path().string());
}

void write_file_atomically(const std::string& path, const std::string& contents) {
    const std::string tmp = temporary_path(path);
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) throw IoError(path + ": cannot create " + tmp + ": " + reason());
        out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
        out.close();
        if (!out) {
            std::remove(tmp.c_str());
            throw IoError(path + ": cannot write " + tmp);
        }
    }
    durable_rename(tmp, path);
}

}  // namespace eplb::io
