// Small helpers over the HDF5 C++ API: every HDF5 failure becomes an eplb::FormatError that
// names the file and the object, and HDF5's own error printing is switched off.
#pragma once

#include <eplb/errors.hpp>

#include <ATen/core/Tensor.h>
#include <H5Cpp.h>

#include <cstdint>
#include <string>
#include <utility>

namespace eplb::io {

/// Runs `f()`; an H5::Exception becomes FormatError("<file>: <what>: <HDF5 detail>").
template <typename F>
auto hdf5_call(const std::string& file, const std::string& what, F&& f) -> decltype(f()) {
    try {
        return std::forward<F>(f)();
    } catch (const H5::Exception& e) {
        throw FormatError(file + ": " + what + ": " + e.getDetailMsg());
    }
}

/// Opens an existing HDF5 file read-only; throws FormatError when it is missing or not HDF5.
H5::H5File open_hdf5_for_reading(const std::string& path);

/// True when `parent` has a link called `name`.
bool has_child(const H5::Group& parent, const std::string& name);

/// Reads a numeric dataset whole, as an int64, float32 or float64 CPU tensor (the closest match to
/// its stored type). Throws FormatError naming the file and dataset when it is missing or not numeric.
at::Tensor read_tensor(const H5::Group& parent, const std::string& name, const std::string& file);

/// Reads a scalar integer (or HDF5 enum over an integer, such as h5py's bool) attribute.
std::int64_t read_int_attribute(const H5::H5Object& object, const std::string& name, const std::string& file);

/// Reads a scalar string attribute (fixed or variable length).
std::string read_string_attribute(const H5::H5Object& object, const std::string& name, const std::string& file);

}  // namespace eplb::io
