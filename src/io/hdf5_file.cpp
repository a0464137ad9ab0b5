#include "io/hdf5_file.hpp"

#include <ATen/ops/empty.h>

#include <fstream>
#include <vector>

namespace eplb::io {
namespace {

struct QuietHdf5 {
    QuietHdf5() { H5::Exception::dontPrint(); }
};
const QuietHdf5 quiet_hdf5;

at::ScalarType tensor_type_for(const H5::DataType& stored, const std::string& file, const std::string& name) {
    switch (stored.getClass()) {
        case H5T_INTEGER: return at::kLong;
        case H5T_FLOAT: return stored.getSize() <= 4 ? at::kFloat : at::kDouble;
        default: throw FormatError(file + ": dataset '" + name + "' is not numeric");
    }
}

H5::PredType memory_type_for(at::ScalarType type) {
    switch (type) {
        case at::kLong: return H5::PredType::NATIVE_INT64;
        case at::kFloat: return H5::PredType::NATIVE_FLOAT;
        default: return H5::PredType::NATIVE_DOUBLE;
    }
}

}  // namespace

H5::H5File open_hdf5_for_reading(const std::string& path) {
    if (!std::ifstream(path).good()) throw FormatError(path + ": cannot open the file (missing or unreadable)");
    if (!hdf5_call(path, "checking the format", [&] { return H5::H5File::isHdf5(path); }))
        throw FormatError(path + ": not an HDF5 file");
    return hdf5_call(path, "opening", [&] { return H5::H5File(path, H5F_ACC_RDONLY); });
}

bool has_child(const H5::Group& parent, const std::string& name) {
    return H5Lexists(parent.getId(), name.c_str(), H5P_DEFAULT) > 0;
}

at::Tensor read_tensor(const H5::Group& parent, const std::string& name, const std::string& file) {
    if (!has_child(parent, name)) throw FormatError(file + ": no dataset '" + name + "'");
    return hdf5_call(file, "reading dataset '" + name + "'", [&] {
        const H5::DataSet ds = parent.openDataSet(name);
        const H5::DataSpace space = ds.getSpace();
        std::vector<hsize_t> dims(static_cast<std::size_t>(space.getSimpleExtentNdims()));
        space.getSimpleExtentDims(dims.data());
        const at::ScalarType type = tensor_type_for(ds.getDataType(), file, name);
        std::vector<std::int64_t> shape(dims.begin(), dims.end());
        at::Tensor out = at::empty(shape, at::TensorOptions().dtype(type));
        if (out.numel() > 0) ds.read(out.data_ptr(), memory_type_for(type));
        return out;
    });
}

std::int64_t read_int_attribute(const H5::H5Object& object, const std::string& name, const std::string& file) {
    return hdf5_call(file, "reading attribute '" + name + "'", [&] {
        const H5::Attribute attr = object.openAttribute(name);
        const H5::DataType stored = attr.getDataType();
        if (stored.getClass() == H5T_ENUM) {
            // HDF5 converts no enum to an integer: read the enum's own bytes (h5py stores a bool
            // as an enum over int8) and widen them.
            std::vector<std::int8_t> raw(stored.getSize());
            attr.read(stored, raw.data());
            std::int64_t value = 0;
            for (std::size_t i = raw.size(); i-- > 0;) value = (value << 8) | static_cast<std::uint8_t>(raw[i]);
            return raw.size() < 8 && raw.back() < 0 ? value - (std::int64_t{1} << (8 * raw.size())) : value;
        }
        if (stored.getClass() != H5T_INTEGER)
            throw FormatError(file + ": attribute '" + name + "' is not an integer");
        std::int64_t value = 0;
        attr.read(H5::PredType::NATIVE_INT64, &value);
        return value;
    });
}

std::string read_string_attribute(const H5::H5Object& object, const std::string& name, const std::string& file) {
    return hdf5_call(file, "reading attribute '" + name + "'", [&] {
        const H5::Attribute attr = object.openAttribute(name);
        std::string value;
        attr.read(attr.getStrType(), value);
        return value;
    });
}

}  // namespace eplb::io
