// Small helpers over the HDF5 C++ API: every HDF5 failure becomes an eplb::FormatError that
// names the file and the object, and HDF5's own error printing is switched off.
//
// Objects are written without time stamps, so that the same content gives the same bytes.
#pragma once

#include <eplb/errors.hpp>

#include <ATen/core/Tensor.h>
#include <H5Cpp.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace eplb::io {

/// Runs `f()`; an H5::Exception becomes `Failure("<file>: <what>: <HDF5 detail>")`: FormatError
/// when reading, IoError when writing.
template <typename Failure = FormatError, typename F>
auto hdf5_call(const std::string& file, const std::string& what, F&& f) -> decltype(f()) {
    try {
        return std::forward<F>(f)();
    } catch (const H5::Exception& e) {
        throw Failure(file + ": " + what + ": " + e.getDetailMsg());
    }
}

/// Throws IoError("<file>: <what> failed") when a C API call (all of them write) returned a
/// negative status.
void check_hdf5(long long status, const std::string& file, const std::string& what);

/// Opens an existing HDF5 file read-only; throws FormatError when it is missing, not HDF5, or
/// truncated or damaged.
H5::H5File open_hdf5_for_reading(const std::string& path);

/// Creates (or truncates) an HDF5 file for writing; throws IoError when it cannot.
H5::H5File create_hdf5(const std::string& path);

/// Creates an HDF5 file that lives in memory only (`name` names it in messages), laid out as
/// create_hdf5 would lay it out on disk.
H5::H5File create_hdf5_in_memory(const std::string& name);

/// True when `parent` has a link called `name`.
bool has_child(const H5::Group& parent, const std::string& name);

/// Names of the links in `group`, in HDF5's (alphabetical) order.
std::vector<std::string> child_names(const H5::Group& group, const std::string& file);

/// Creates a group (without time stamps).
H5::Group create_group(const H5::Group& parent, const std::string& name, const std::string& file);

/// Copies object `name` of `from` (a group or dataset, with everything below it) to `to`.
void copy_object(const H5::Group& from, const std::string& name, const H5::Group& to, const std::string& file);

/// Reads a numeric dataset whole, as an int64, float32 or float64 CPU tensor (the closest match to
/// its stored type). Throws FormatError naming the file and dataset when it is missing or not numeric.
at::Tensor read_tensor(const H5::Group& parent, const std::string& name, const std::string& file);

/// Writes an int64, int32, float32 or float64 tensor whole as a contiguous dataset.
void write_tensor(const H5::Group& parent, const std::string& name, const at::Tensor& tensor, const std::string& file);

/// True when `object` has an attribute called `name`.
bool has_attribute(const H5::H5Object& object, const std::string& name);

/// Reads a scalar integer (or HDF5 enum over an integer, such as h5py's bool) attribute.
std::int64_t read_int_attribute(const H5::H5Object& object, const std::string& name, const std::string& file);

/// Reads a scalar floating-point (or integer) attribute as a double.
double read_double_attribute(const H5::H5Object& object, const std::string& name, const std::string& file);

/// Reads a scalar string attribute (fixed or variable length).
std::string read_string_attribute(const H5::H5Object& object, const std::string& name, const std::string& file);

/// Reads a one-dimensional (or scalar) integer attribute.
std::vector<std::int64_t> read_int_vector_attribute(const H5::H5Object& object, const std::string& name,
                                                    const std::string& file);

/// Writes scalar attributes: UTF-8 variable-length string, int64, float64; and an int64 vector.
void write_attribute(const H5::H5Object& object, const std::string& name, const std::string& value, const std::string& file);
void write_attribute(const H5::H5Object& object, const std::string& name, const char* value, const std::string& file);
void write_attribute(const H5::H5Object& object, const std::string& name, std::int64_t value, const std::string& file);
void write_attribute(const H5::H5Object& object, const std::string& name, double value, const std::string& file);
void write_attribute(const H5::H5Object& object, const std::string& name, const std::vector<std::int64_t>& values,
                     const std::string& file);

/// A table of named columns, stored as a one-dimensional compound dataset (one element per row)
/// with int64, float64 and UTF-8 variable-length string members, in the order they were added.
/// h5py reads it as a NumPy structured array, which `pandas.DataFrame` takes as is.
class Table {
public:
    void add(const std::string& name, std::vector<std::int64_t> column);
    void add(const std::string& name, std::vector<double> column);
    void add(const std::string& name, std::vector<std::string> column);

    std::size_t rows() const { return rows_; }
    bool has(const std::string& name) const;
    std::vector<std::string> names() const;

    /// A column by name; throws FormatError "<file>: table '<table>' has no int64 column 'x'".
    const std::vector<std::int64_t>& ints(const std::string& name) const;
    const std::vector<double>& doubles(const std::string& name) const;
    const std::vector<std::string>& strings(const std::string& name) const;

    void write(const H5::Group& parent, const std::string& name, const std::string& file) const;
    /// Reads every member: integers as int64, floats as float64, variable-length strings as text.
    static Table read(const H5::Group& parent, const std::string& name, const std::string& file);

private:
    enum class Kind { int64, float64, text };
    struct Column {
        std::string name;
        Kind kind;
        std::vector<std::int64_t> ints;
        std::vector<double> doubles;
        std::vector<std::string> strings;
    };
    const Column& column(const std::string& name, Kind kind) const;
    void add_column(Column column, std::size_t rows);

    std::vector<Column> columns_;
    std::size_t rows_ = 0;
    std::string where_;  // "<file>: table '<name>'", for messages about a table that was read
};

}  // namespace eplb::io
