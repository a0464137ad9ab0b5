// The archive's HDF5 layout (see the README): how records become groups, attributes and tables.
//
//   /                  format = "eplb plan archive", format_version, eplb_version
//   /plans/<id>/       one group per plan: phy2log, log2phy, logcnt, layer_ids, loads, next_loads,
//                      metrics (compound, one row per layer); attributes: identity, source,
//                      windows, topology, policy, aggregates
//   /plans/<id>/run/   attributes that differ from run to run: command_line, created, planning time
//   /index             compound, one row per plan (PlanSummary)
//   /failures          compound, one row per failed input (FailureRecord)
#pragma once

#include "io/hdf5_file.hpp"

#include <eplb/archive.hpp>

#include <string>
#include <vector>

namespace eplb::io {

inline constexpr const char* kArchiveFormat = "eplb plan archive";
/// Version 2 added node locality (per layer and aggregate) and the deployed plan of migration-aware
/// plans; version 1 archives lack those fields and are refused with a message saying so.
inline constexpr std::int64_t kArchiveFormatVersion = 2;

/// Writes the root attributes and the /plans group of a new archive; returns /plans.
H5::Group start_archive(const H5::H5File& file, const std::string& path);

/// Throws FormatError unless `file` is an eplb plan archive (root attribute `format`).
void require_archive(const H5::H5File& file, const std::string& path);

/// Writes `record` as the group /plans/<id>.
void write_plan_group(const H5::Group& plans, const PlanRecord& record, const std::string& path);

/// Reads the group /plans/<id> back whole.
PlanRecord read_plan_group(const H5::Group& plans, const std::string& id, const std::string& path);

/// The summary kept in the attributes of /plans/<id>.
PlanSummary read_plan_summary(const H5::Group& plans, const std::string& id, const std::string& path);

/// The source file path recorded with /plans/<id>.
std::string read_plan_source(const H5::Group& plans, const std::string& id, const std::string& path);

/// Writes /index and /failures.
void write_index(const H5::Group& root, const std::vector<PlanSummary>& plans, const std::string& path);
void write_failures(const H5::Group& root, const std::vector<FailureRecord>& failures, const std::string& path);

/// Reads /index and /failures.
std::vector<PlanSummary> read_index(const H5::Group& root, const std::string& path);
std::vector<FailureRecord> read_failures(const H5::Group& root, const std::string& path);

}  // namespace eplb::io
