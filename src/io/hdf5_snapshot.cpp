// eplb's HDF5 snapshot layout (documented in the README):
//   /logical_count   [T, L, E] or [L, E] counts (any integer or float type)
//   attributes of /  layer_ids [L] (model layer of each row), num_model_layers, model, checkpoint
// Every attribute is optional; other datasets and attributes are ignored.
#include "io/files.hpp"
#include "io/hdf5_file.hpp"
#include "io/raw_snapshot.hpp"

#include <ATen/ops/floor.h>
#include <ATen/ops/equal.h>

#include <cstdio>

namespace eplb::io {
namespace {

std::string optional_string(const H5::H5File& file, const std::string& name, const std::string& path) {
    return has_attribute(file, name) ? read_string_attribute(file, name, path) : std::string();
}

}  // namespace

RawSnapshot read_hdf5_raw(const std::string& path) {
    const H5::H5File file = open_hdf5_for_reading(path);
    if (!has_child(file, "logical_count"))
        throw FormatError(path + ": no dataset 'logical_count' (eplb's HDF5 snapshot holds logical_count "
                                 "[steps, layers, experts] or [layers, experts])");
    RawSnapshot raw = raw_counts(path, "eplb-hdf5", read_tensor(file, "logical_count", path));
    if (has_attribute(file, "layer_ids")) raw.row_ids = read_int_vector_attribute(file, "layer_ids", path);
    if (has_attribute(file, "num_model_layers")) raw.model_layers = read_int_attribute(file, "num_model_layers", path);
    raw.model = optional_string(file, "model", path);
    raw.checkpoint = optional_string(file, "checkpoint", path);
    return raw;
}

}  // namespace eplb::io

namespace eplb {

void write_hdf5_snapshot(const Snapshot& snapshot, const std::string& path) {
    const at::Tensor steps = snapshot.steps.to(at::kCPU).to(at::kDouble).contiguous();
    const bool integral = at::equal(at::floor(steps), steps);
    const std::string tmp = io::temporary_path(path);
    try {
        {
            const H5::H5File file = io::create_hdf5(tmp);
            io::write_tensor(file, "logical_count", integral ? steps.to(at::kLong) : steps, path);
            io::write_attribute(file, "layer_ids", snapshot.layer_ids, path);
            io::write_attribute(file, "num_model_layers", snapshot.model_layers, path);
            io::write_attribute(file, "model", snapshot.model, path);
            io::write_attribute(file, "checkpoint", snapshot.checkpoint, path);
            io::write_attribute(file, "format", "eplb snapshot", path);
        }
        io::durable_rename(tmp, path);
    } catch (...) {
        std::remove(tmp.c_str());
        throw;
    }
}

}  // namespace eplb
