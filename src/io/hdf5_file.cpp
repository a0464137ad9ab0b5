#include "io/hdf5_file.hpp"

#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <cstring>
#include <fstream>
#include <memory>

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
        case at::kInt: return H5::PredType::NATIVE_INT32;
        case at::kShort: return H5::PredType::NATIVE_INT16;
        case at::kChar: return H5::PredType::NATIVE_INT8;
        case at::kFloat: return H5::PredType::NATIVE_FLOAT;
        default: return H5::PredType::NATIVE_DOUBLE;
    }
}

constexpr std::int64_t kCompressFrom = 4096;  // bytes

// Object creation properties without time stamps: identical content gives identical bytes.
template <typename PropList>
PropList untimed(PropList plist) {
    H5Pset_obj_track_times(plist.getId(), false);
    return plist;
}

H5::StrType utf8_string_type() {
    H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
    type.setCset(H5T_CSET_UTF8);
    return type;
}

H5::Attribute create_attribute(const H5::H5Object& object, const std::string& name, const H5::DataType& type,
                               const H5::DataSpace& space) {
    if (object.attrExists(name)) object.removeAttr(name);
    return object.createAttribute(name, type, space);
}

}  // namespace

void check_hdf5(long long status, const std::string& file, const std::string& what) {
    if (status < 0) throw IoError(file + ": " + what + " failed");
}

H5::H5File open_hdf5_for_reading(const std::string& path) {
    if (!std::ifstream(path).good()) throw FormatError(path + ": cannot open the file (missing or unreadable)");
    if (!hdf5_call(path, "checking the format", [&] { return H5::H5File::isHdf5(path); }))
        throw FormatError(path + ": not an HDF5 file");
    try {
        return H5::H5File(path, H5F_ACC_RDONLY);
    } catch (const H5::Exception& e) {
        throw FormatError(path + ": cannot open the HDF5 file: truncated or damaged (" + e.getDetailMsg() + ")");
    }
}

H5::H5File create_hdf5(const std::string& path) {
    try {
        return H5::H5File(path, H5F_ACC_TRUNC);
    } catch (const H5::Exception& e) {
        throw IoError(path + ": cannot create the HDF5 file: " + e.getDetailMsg());
    }
}

H5::H5File create_hdf5_in_memory(const std::string& name) {
    try {
        H5::FileAccPropList fapl;
        fapl.setCore(1 << 20, /*backing_store=*/false);
        return H5::H5File(name, H5F_ACC_TRUNC, H5::FileCreatPropList::DEFAULT, fapl);
    } catch (const H5::Exception& e) {
        throw IoError(name + ": cannot create an HDF5 file in memory: " + e.getDetailMsg());
    }
}

bool has_child(const H5::Group& parent, const std::string& name) {
    return H5Lexists(parent.getId(), name.c_str(), H5P_DEFAULT) > 0;
}

std::vector<std::string> child_names(const H5::Group& group, const std::string& file) {
    return hdf5_call(file, "listing a group", [&] {
        std::vector<std::string> names;
        const hsize_t n = group.getNumObjs();
        for (hsize_t i = 0; i < n; ++i) names.push_back(group.getObjnameByIdx(i));
        return names;
    });
}

H5::Group create_group(const H5::Group& parent, const std::string& name, const std::string& file) {
    return hdf5_call<IoError>(file, "creating group '" + name + "'", [&] {
        const H5::PropList gcpl = untimed(H5::PropList(H5P_GROUP_CREATE));
        const hid_t id = H5Gcreate2(parent.getId(), name.c_str(), H5P_DEFAULT, gcpl.getId(), H5P_DEFAULT);
        check_hdf5(id, file, "creating group '" + name + "'");
        H5Gclose(id);
        return parent.openGroup(name);
    });
}

void copy_object(const H5::Group& from, const std::string& name, const H5::Group& to, const std::string& file) {
    check_hdf5(H5Ocopy(from.getId(), name.c_str(), to.getId(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), file,
               "copying '" + name + "'");
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

// The narrowest signed integer type that holds every value of `t` (int64 or int32): plans'
// slot ids and counts fit in int16 up to 32,767 slots, which makes them 4 times smaller to
// compress and store than int64, and every reader widens them back (HDF5 converts on read).
at::ScalarType narrowest_integer_type(const at::Tensor& t) {
    if (t.numel() == 0) return at::kShort;
    const std::int64_t lo = t.min().item<std::int64_t>(), hi = t.max().item<std::int64_t>();
    auto fits = [&](auto limits) { return lo >= decltype(limits)::min() && hi <= decltype(limits)::max(); };
    if (fits(std::numeric_limits<std::int8_t>{})) return at::kChar;
    if (fits(std::numeric_limits<std::int16_t>{})) return at::kShort;
    if (fits(std::numeric_limits<std::int32_t>{})) return at::kInt;
    return at::kLong;
}

void write_tensor(const H5::Group& parent, const std::string& name, const at::Tensor& tensor, const std::string& file) {
    at::Tensor t = tensor.to(at::kCPU).contiguous();
    if (t.scalar_type() != at::kLong && t.scalar_type() != at::kInt && t.scalar_type() != at::kFloat &&
        t.scalar_type() != at::kDouble)
        throw IoError(file + ": dataset '" + name + "': cannot store dtype " + std::string(c10::toString(t.scalar_type())));
    if (t.scalar_type() == at::kLong || t.scalar_type() == at::kInt) t = t.to(narrowest_integer_type(t));
    const H5::PredType type = memory_type_for(t.scalar_type());
    hdf5_call<IoError>(file, "writing dataset '" + name + "'", [&] {
        std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
        const H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
        H5::DSetCreatPropList dcpl = untimed(H5::DSetCreatPropList());
        // Plans' log2phy are mostly -1 padding: large datasets are stored as one chunk,
        // byte-shuffled and deflated (gzip, which every HDF5 reader has). Level 1: on plans,
        // writing was 1.5x faster than at level 4 for files about 10 % larger.
        if (t.numel() * static_cast<std::int64_t>(t.element_size()) >= kCompressFrom && !dims.empty()) {
            dcpl.setChunk(static_cast<int>(dims.size()), dims.data());
            dcpl.setShuffle();
            dcpl.setDeflate(1);
        }
        const H5::DataSet ds = parent.createDataSet(name, type, space, dcpl);
        if (t.numel() > 0) ds.write(t.data_ptr(), type);
    });
}

bool has_attribute(const H5::H5Object& object, const std::string& name) {
    return H5Aexists(object.getId(), name.c_str()) > 0;
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
        if (stored.getClass() != H5T_INTEGER || attr.getSpace().getSimpleExtentNpoints() != 1)
            throw FormatError(file + ": attribute '" + name + "' is not an integer");
        std::int64_t value = 0;
        attr.read(H5::PredType::NATIVE_INT64, &value);
        return value;
    });
}

double read_double_attribute(const H5::H5Object& object, const std::string& name, const std::string& file) {
    return hdf5_call(file, "reading attribute '" + name + "'", [&] {
        const H5::Attribute attr = object.openAttribute(name);
        const H5T_class_t cls = attr.getDataType().getClass();
        if ((cls != H5T_FLOAT && cls != H5T_INTEGER) || attr.getSpace().getSimpleExtentNpoints() != 1)
            throw FormatError(file + ": attribute '" + name + "' is not a number");
        double value = 0;
        attr.read(H5::PredType::NATIVE_DOUBLE, &value);
        return value;
    });
}

std::string read_string_attribute(const H5::H5Object& object, const std::string& name, const std::string& file) {
    return hdf5_call(file, "reading attribute '" + name + "'", [&] {
        const H5::Attribute attr = object.openAttribute(name);
        if (attr.getDataType().getClass() != H5T_STRING)
            throw FormatError(file + ": attribute '" + name + "' is not a string");
        std::string value;
        attr.read(attr.getStrType(), value);
        return value;
    });
}

std::vector<std::int64_t> read_int_vector_attribute(const H5::H5Object& object, const std::string& name,
                                                    const std::string& file) {
    return hdf5_call(file, "reading attribute '" + name + "'", [&] {
        const H5::Attribute attr = object.openAttribute(name);
        const H5::DataSpace space = attr.getSpace();
        if (attr.getDataType().getClass() != H5T_INTEGER || space.getSimpleExtentNdims() > 1)
            throw FormatError(file + ": attribute '" + name + "' is not a list of integers");
        std::vector<std::int64_t> values(static_cast<std::size_t>(space.getSimpleExtentNpoints()));
        if (!values.empty()) attr.read(H5::PredType::NATIVE_INT64, values.data());
        return values;
    });
}

void write_attribute(const H5::H5Object& object, const std::string& name, const std::string& value, const std::string& file) {
    hdf5_call<IoError>(file, "writing attribute '" + name + "'", [&] {
        const H5::StrType type = utf8_string_type();
        create_attribute(object, name, type, H5::DataSpace(H5S_SCALAR)).write(type, value);
    });
}

void write_attribute(const H5::H5Object& object, const std::string& name, const char* value, const std::string& file) {
    write_attribute(object, name, std::string(value), file);
}

void write_attribute(const H5::H5Object& object, const std::string& name, std::int64_t value, const std::string& file) {
    hdf5_call<IoError>(file, "writing attribute '" + name + "'", [&] {
        create_attribute(object, name, H5::PredType::NATIVE_INT64, H5::DataSpace(H5S_SCALAR))
            .write(H5::PredType::NATIVE_INT64, &value);
    });
}

void write_attribute(const H5::H5Object& object, const std::string& name, double value, const std::string& file) {
    hdf5_call<IoError>(file, "writing attribute '" + name + "'", [&] {
        create_attribute(object, name, H5::PredType::NATIVE_DOUBLE, H5::DataSpace(H5S_SCALAR))
            .write(H5::PredType::NATIVE_DOUBLE, &value);
    });
}

void write_attribute(const H5::H5Object& object, const std::string& name, const std::vector<std::int64_t>& values,
                     const std::string& file) {
    hdf5_call<IoError>(file, "writing attribute '" + name + "'", [&] {
        const hsize_t n = values.size();
        const H5::DataSpace space = n ? H5::DataSpace(1, &n) : H5::DataSpace(H5S_NULL);
        const H5::Attribute attr = create_attribute(object, name, H5::PredType::NATIVE_INT64, space);
        if (n) attr.write(H5::PredType::NATIVE_INT64, values.data());
    });
}

// ---- Table -----------------------------------------------------------------------------------

void Table::add_column(Column column, std::size_t rows) {
    if (!columns_.empty() && rows != rows_)
        throw Error("table column '" + column.name + "' has " + std::to_string(rows) + " rows; expected " +
                    std::to_string(rows_));
    rows_ = rows;
    columns_.push_back(std::move(column));
}

void Table::add(const std::string& name, std::vector<std::int64_t> values) {
    const std::size_t n = values.size();
    add_column(Column{name, Kind::int64, std::move(values), {}, {}}, n);
}

void Table::add(const std::string& name, std::vector<double> values) {
    const std::size_t n = values.size();
    add_column(Column{name, Kind::float64, {}, std::move(values), {}}, n);
}

void Table::add(const std::string& name, std::vector<std::string> values) {
    const std::size_t n = values.size();
    add_column(Column{name, Kind::text, {}, {}, std::move(values)}, n);
}

bool Table::has(const std::string& name) const {
    return std::any_of(columns_.begin(), columns_.end(), [&](const Column& c) { return c.name == name; });
}

std::vector<std::string> Table::names() const {
    std::vector<std::string> out;
    for (const Column& c : columns_) out.push_back(c.name);
    return out;
}

const Table::Column& Table::column(const std::string& name, Kind kind) const {
    static const char* const kind_names[] = {"int64", "float64", "string"};
    for (const Column& c : columns_)
        if (c.name == name && c.kind == kind) return c;
    throw FormatError((where_.empty() ? std::string("table") : where_) + " has no " +
                      kind_names[static_cast<int>(kind)] + " column '" + name + "'");
}

const std::vector<std::int64_t>& Table::ints(const std::string& name) const { return column(name, Kind::int64).ints; }
const std::vector<double>& Table::doubles(const std::string& name) const { return column(name, Kind::float64).doubles; }
const std::vector<std::string>& Table::strings(const std::string& name) const { return column(name, Kind::text).strings; }

void Table::write(const H5::Group& parent, const std::string& name, const std::string& file) const {
    // Row layout: 8 bytes per member (int64, float64, or a char* to a NUL-terminated string).
    const std::size_t row_size = 8 * std::max<std::size_t>(columns_.size(), 1);
    hdf5_call<IoError>(file, "writing table '" + name + "'", [&] {
        H5::CompType type(row_size);
        const H5::StrType text_type = utf8_string_type();
        for (std::size_t c = 0; c < columns_.size(); ++c) {
            const Column& col = columns_[c];
            if (col.kind == Kind::int64) type.insertMember(col.name, 8 * c, H5::PredType::NATIVE_INT64);
            if (col.kind == Kind::float64) type.insertMember(col.name, 8 * c, H5::PredType::NATIVE_DOUBLE);
            if (col.kind == Kind::text) type.insertMember(col.name, 8 * c, text_type);
        }
        std::vector<unsigned char> rows(row_size * rows_);
        for (std::size_t c = 0; c < columns_.size(); ++c)
            for (std::size_t r = 0; r < rows_; ++r) {
                unsigned char* cell = rows.data() + r * row_size + 8 * c;
                const Column& col = columns_[c];
                if (col.kind == Kind::int64) std::memcpy(cell, &col.ints[r], 8);
                if (col.kind == Kind::float64) std::memcpy(cell, &col.doubles[r], 8);
                if (col.kind == Kind::text) {
                    const char* text = col.strings[r].c_str();
                    std::memcpy(cell, &text, sizeof text);
                }
            }
        const hsize_t n = rows_;
        const H5::DataSpace space(1, &n);
        const H5::DSetCreatPropList dcpl = untimed(H5::DSetCreatPropList());
        const H5::DataSet ds = parent.createDataSet(name, type, space, dcpl);
        if (n) ds.write(rows.data(), type);
    });
}

Table Table::read(const H5::Group& parent, const std::string& name, const std::string& file) {
    const std::string where = file + ": table '" + name + "'";
    if (!has_child(parent, name)) throw FormatError(file + ": no table '" + name + "'");
    return hdf5_call(file, "reading table '" + name + "'", [&] {
        const H5::DataSet ds = parent.openDataSet(name);
        if (ds.getTypeClass() != H5T_COMPOUND || ds.getSpace().getSimpleExtentNdims() != 1)
            throw FormatError(where + " is not a one-dimensional compound dataset");
        const H5::CompType stored = ds.getCompType();
        const std::size_t n = static_cast<std::size_t>(ds.getSpace().getSimpleExtentNpoints());
        const unsigned members = static_cast<unsigned>(stored.getNmembers());
        // One read of every member into 8-byte cells (int64, float64, or char* for strings), with
        // a conversion buffer sized to the table: HDF5's default, 1 MiB zeroed on every read, made
        // reading an archive of small plans take ten times longer.
        H5::CompType mem(std::size_t{8} * std::max(1u, members));
        std::vector<Kind> kinds;
        std::vector<std::string> names;
        for (unsigned m = 0; m < members; ++m) {
            const std::string member = stored.getMemberName(m);
            const H5T_class_t cls = stored.getMemberClass(m);
            const std::size_t offset = 8 * kinds.size();
            if (cls == H5T_INTEGER) {
                mem.insertMember(member, offset, H5::PredType::NATIVE_INT64);
                kinds.push_back(Kind::int64);
            } else if (cls == H5T_FLOAT) {
                mem.insertMember(member, offset, H5::PredType::NATIVE_DOUBLE);
                kinds.push_back(Kind::float64);
            } else if (cls == H5T_STRING && stored.getMemberStrType(m).isVariableStr()) {
                mem.insertMember(member, offset, utf8_string_type());
                kinds.push_back(Kind::text);
            } else {
                throw FormatError(where + ": member '" + member + "' is not an integer, float or variable-length string");
            }
            names.push_back(member);
        }
        std::vector<unsigned char> rows(8 * std::max(1u, members) * n);
        if (n) {
            H5::DSetMemXferPropList xfer;
            // Room for every row (on disk a variable-length string takes 16 bytes, not 8), within
            // [64 KiB, 1 MiB]: HDF5 converts larger tables in strips.
            const std::size_t wanted = 2 * std::max(stored.getSize(), mem.getSize()) * n;
            xfer.setBuffer(std::clamp<std::size_t>(wanted, 64 << 10, 1 << 20), nullptr, nullptr);
            ds.read(rows.data(), mem, H5::DataSpace::ALL, H5::DataSpace::ALL, xfer);
        }
        Table table;
        table.where_ = where;
        const std::size_t row_size = mem.getSize();
        for (std::size_t c = 0; c < kinds.size(); ++c) {
            Column col{names[c], kinds[c], {}, {}, {}};
            for (std::size_t r = 0; r < n; ++r) {
                const unsigned char* cell = rows.data() + r * row_size + 8 * c;
                if (kinds[c] == Kind::int64) std::memcpy(&col.ints.emplace_back(), cell, 8);
                if (kinds[c] == Kind::float64) std::memcpy(&col.doubles.emplace_back(), cell, 8);
                if (kinds[c] == Kind::text) {
                    const char* text = nullptr;
                    std::memcpy(&text, cell, sizeof text);
                    col.strings.emplace_back(text ? text : "");
                }
            }
            table.columns_.push_back(std::move(col));
        }
        if (n) H5::DataSet::vlenReclaim(rows.data(), mem, ds.getSpace());
        table.rows_ = n;
        return table;
    });
}

}  // namespace eplb::io
