#include "support/archive_compare.hpp"

#include "io/hdf5_file.hpp"

#include <H5Cpp.h>

#include <cstring>
#include <map>
#include <set>

namespace eplb::test {
namespace {

bool in_run_group(const std::string& path) {
    return path == "run" || path.rfind("run/", 0) == 0 || path.find("/run/") != std::string::npos ||
           (path.size() >= 4 && path.compare(path.size() - 4, 4, "/run") == 0);
}

// Every object below the root by path ("." for the root), with its kind, outside `run` groups.
std::map<std::string, H5O_type_t> objects_of(hid_t file) {
    std::map<std::string, H5O_type_t> out;
    auto visit = [](hid_t, const char* name, const H5O_info_t* info, void* data) -> herr_t {
        if (!in_run_group(name)) (*static_cast<std::map<std::string, H5O_type_t>*>(data))[name] = info->type;
        return 0;
    };
    H5Ovisit(file, H5_INDEX_NAME, H5_ITER_INC, visit, &out);
    return out;
}

bool has_variable_length(hid_t type) {
    return H5Tdetect_class(type, H5T_VLEN) > 0 || (H5Tget_class(type) == H5T_STRING && H5Tis_variable_str(type) > 0) ||
           (H5Tget_class(type) == H5T_COMPOUND && [&] {
               for (int m = 0; m < H5Tget_nmembers(type); ++m) {
                   const hid_t member = H5Tget_member_type(type, static_cast<unsigned>(m));
                   const bool v = H5Tget_class(member) == H5T_STRING && H5Tis_variable_str(member) > 0;
                   H5Tclose(member);
                   if (v) return true;
               }
               return false;
           }());
}

std::vector<hsize_t> dims_of(hid_t space) {
    std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(0, H5Sget_simple_extent_ndims(space))));
    H5Sget_simple_extent_dims(space, dims.data(), nullptr);
    return dims;
}

// The stored bytes of a dataset or attribute without variable-length parts.
std::string raw_bytes(hid_t object, bool attribute) {
    const hid_t type = attribute ? H5Aget_type(object) : H5Dget_type(object);
    const hid_t space = attribute ? H5Aget_space(object) : H5Dget_space(object);
    const auto n = static_cast<std::size_t>(H5Sget_simple_extent_npoints(space));
    std::string bytes(n * H5Tget_size(type), '\0');
    if (!bytes.empty()) {
        if (attribute)
            H5Aread(object, type, bytes.data());
        else
            H5Dread(object, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data());
    }
    H5Sclose(space);
    H5Tclose(type);
    return bytes;
}

// A scalar variable-length string attribute.
std::string text_of(hid_t attribute, hid_t type) {
    char* text = nullptr;
    if (H5Aread(attribute, type, &text) < 0 || !text) return "<unreadable>";
    std::string out(text);
    H5free_memory(text);
    return out;
}

std::string bits(const std::vector<double>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(double));
}

class Comparer {
public:
    Comparer(const std::string& a, const std::string& b) : a_(a), b_(b) {}

    std::vector<std::string> run() {
        const H5::H5File fa = io::open_hdf5_for_reading(a_), fb = io::open_hdf5_for_reading(b_);
        const auto oa = objects_of(fa.getId()), ob = objects_of(fb.getId());
        for (const auto& [path, kind] : oa) {
            const auto other = ob.find(path);
            if (other == ob.end()) {
                out_.push_back(path + ": only in " + a_);
                continue;
            }
            if (other->second != kind) {
                out_.push_back(path + ": a " + (kind == H5O_TYPE_GROUP ? "group" : "dataset") + " in " + a_ + " only");
                continue;
            }
            const hid_t xa = H5Oopen(fa.getId(), path.c_str(), H5P_DEFAULT), xb = H5Oopen(fb.getId(), path.c_str(), H5P_DEFAULT);
            compare_attributes(path, xa, xb);
            if (kind == H5O_TYPE_DATASET) compare_dataset(path, fa, fb, xa, xb);
            H5Oclose(xa);
            H5Oclose(xb);
        }
        for (const auto& [path, kind] : ob)
            if (!oa.count(path)) out_.push_back(path + ": only in " + b_);
        return std::move(out_);
    }

private:
    static std::set<std::string> attribute_names(hid_t object) {
        std::set<std::string> names;
        auto add = [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
            static_cast<std::set<std::string>*>(data)->insert(name);
            return 0;
        };
        H5Aiterate2(object, H5_INDEX_NAME, H5_ITER_INC, nullptr, add, &names);
        return names;
    }

    void compare_attributes(const std::string& path, hid_t xa, hid_t xb) {
        const std::set<std::string> na = attribute_names(xa), nb = attribute_names(xb);
        if (na != nb) out_.push_back(path + ": different attribute names");
        for (const std::string& name : na) {
            if (!nb.count(name)) continue;
            const hid_t aa = H5Aopen(xa, name.c_str(), H5P_DEFAULT), ab = H5Aopen(xb, name.c_str(), H5P_DEFAULT);
            const hid_t ta = H5Aget_type(aa), tb = H5Aget_type(ab);
            const std::string where = path + " @" + name;
            if (H5Tequal(ta, tb) <= 0) {
                out_.push_back(where + ": different types");
            } else if (has_variable_length(ta)) {
                if (text_of(aa, ta) != text_of(ab, tb)) out_.push_back(where + ": different text");
            } else if (raw_bytes(aa, true) != raw_bytes(ab, true)) {
                out_.push_back(where + ": different bytes");
            }
            H5Tclose(ta);
            H5Tclose(tb);
            H5Aclose(aa);
            H5Aclose(ab);
        }
    }

    void compare_dataset(const std::string& path, const H5::H5File& fa, const H5::H5File& fb, hid_t da, hid_t db) {
        const hid_t ta = H5Dget_type(da), tb = H5Dget_type(db);
        const hid_t sa = H5Dget_space(da), sb = H5Dget_space(db);
        if (H5Tequal(ta, tb) <= 0) {
            out_.push_back(path + ": different types");
        } else if (dims_of(sa) != dims_of(sb)) {
            out_.push_back(path + ": different shapes");
        } else if (has_variable_length(ta)) {
            compare_table(path, fa, fb);
        } else if (raw_bytes(da, false) != raw_bytes(db, false)) {
            out_.push_back(path + ": different bytes");
        }
        H5Sclose(sa);
        H5Sclose(sb);
        H5Tclose(ta);
        H5Tclose(tb);
    }

    // A table with text columns, column by column (numbers by their bits).
    void compare_table(const std::string& path, const H5::H5File& fa, const H5::H5File& fb) {
        const std::size_t slash = path.rfind('/');
        const std::string parent = slash == std::string::npos ? "/" : "/" + path.substr(0, slash);
        const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
        const io::Table ta = io::Table::read(fa.openGroup(parent), name, a_);
        const io::Table tb = io::Table::read(fb.openGroup(parent), name, b_);
        if (ta.names() != tb.names() || ta.rows() != tb.rows()) {
            out_.push_back(path + ": different columns or rows");
            return;
        }
        for (const std::string& column : ta.names()) {
            bool same = true;
            try {
                same = ta.strings(column) == tb.strings(column);
            } catch (const std::exception&) {
                try {
                    same = ta.ints(column) == tb.ints(column);
                } catch (const std::exception&) {
                    same = bits(ta.doubles(column)) == bits(tb.doubles(column));
                }
            }
            if (!same) out_.push_back(path + ": column " + column + " differs");
        }
    }

    std::string a_, b_;
    std::vector<std::string> out_;
};

}  // namespace

std::vector<std::string> archive_differences(const std::string& a, const std::string& b) { return Comparer(a, b).run(); }

}  // namespace eplb::test
