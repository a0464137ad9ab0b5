// Typed exceptions thrown at eplb's API boundary.
//
// Every message names the offending value and the rule it breaks, in one line, so that a
// command-line front end can print it as is.
#pragma once

#include <stdexcept>
#include <string>

namespace eplb {

/// Base of every error eplb throws on purpose.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A topology that cannot hold a plan, e.g. "num_replicas=300 is not a multiple of num_gpus=32".
class TopologyError : public Error {
public:
    using Error::Error;
};

/// A load tensor that cannot be planned: wrong rank, empty, NaN/Inf/negative entries.
class LoadError : public Error {
public:
    using Error::Error;
};

/// A plan whose maps are inconsistent, or two plans that cannot be compared.
class PlanError : public Error {
public:
    using Error::Error;
};

/// A file that cannot be read or parsed; the message names the file and the field.
class FormatError : public Error {
public:
    using Error::Error;
};

/// A file that cannot be written, renamed or removed; the message names the file and the reason.
class IoError : public Error {
public:
    using Error::Error;
};

/// A device that was asked for but cannot be used, e.g. "cuda" with a CPU-only LibTorch.
class DeviceError : public Error {
public:
    using Error::Error;
};

/// A command-line or configuration value that is not allowed.
class UsageError : public Error {
public:
    using Error::Error;
};

}  // namespace eplb
