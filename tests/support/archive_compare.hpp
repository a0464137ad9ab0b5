// Compares two plan archives object by object, byte for byte, leaving out what differs from run to
// run by design: every `run` group (command line, time, planning time, execution).
#pragma once

#include <string>
#include <vector>

namespace eplb::test {

/// The differences between archives `a` and `b`, one line each ("" when identical): objects
/// present in one only; datasets whose type, shape or stored bytes differ (tables with text
/// columns are compared column by column, floating-point values by their bits); attributes
/// likewise. Groups called `run` and everything in them are skipped.
std::vector<std::string> archive_differences(const std::string& a, const std::string& b);

}  // namespace eplb::test
