// Whole-file reads and crash-safe writes: a file is written under a temporary name, flushed to
// disk, and renamed into place, so that a reader (or a crash) never sees it half-written.
#pragma once

#include <string>

namespace eplb::io {

/// The bytes of a file; throws FormatError "<path>: cannot open the file ..." when it is missing
/// or unreadable.
std::string read_file_bytes(const std::string& path);

/// A temporary name next to `path`, unique to this process: "<path>.tmp.<pid>".
std::string temporary_path(const std::string& path);

/// Flushes `from` to disk, renames it to `to` (atomically replacing it) and flushes the directory
/// entry; throws IoError naming the files.
void durable_rename(const std::string& from, const std::string& to);

/// Writes `contents` to `path` through a temporary file and durable_rename.
void write_file_atomically(const std::string& path, const std::string& contents);

/// Flushes a directory's entries to disk (after creating, renaming or removing files in it).
void sync_directory(const std::string& path);

}  // namespace eplb::io
