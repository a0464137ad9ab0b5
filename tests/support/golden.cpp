#include "support/golden.hpp"

#include "io/hdf5_file.hpp"

namespace eplb::test {

std::string test_data(const std::string& name) { return std::string(EPLB_TEST_DATA_DIR) + "/" + name; }

std::vector<GoldenCase> load_golden(const std::string& reference) {
    const std::string path = test_data(reference + ".h5");
    const H5::H5File file = io::open_hdf5_for_reading(path);
    const H5::Group cases = file.openGroup("cases");
    std::vector<GoldenCase> out;
    for (hsize_t i = 0; i < cases.getNumObjs(); ++i) {
        const std::string name = cases.getObjnameByIdx(i);
        const H5::Group g = cases.openGroup(name);
        const H5::Group st = g.openGroup("stable");
        auto attr = [&](const char* a) { return io::read_int_attribute(g, a, path); };
        GoldenCase c;
        c.name = name;
        c.topology = Topology{attr("num_replicas"), attr("num_groups"), attr("num_nodes"), attr("num_gpus")};
        c.has_ties = attr("has_ties") != 0;
        c.duplicates = attr("duplicates");
        c.agg_gpu_balancedness = io::hdf5_call(path, "agg_gpu_balancedness", [&] {
            double v = 0;
            g.openAttribute("agg_gpu_balancedness").read(H5::PredType::NATIVE_DOUBLE, &v);
            return v;
        });
        c.weight = io::read_tensor(g, "weight", path);
        c.phy2log = io::read_tensor(g, "phy2log", path);
        c.log2phy = io::read_tensor(g, "log2phy", path);
        c.logcnt = io::read_tensor(g, "logcnt", path);
        c.gpu_load = io::read_tensor(g, "gpu_load", path);
        c.stable_phy2log = io::read_tensor(st, "phy2log", path);
        c.stable_log2phy = io::read_tensor(st, "log2phy", path);
        c.stable_logcnt = io::read_tensor(st, "logcnt", path);
        out.push_back(std::move(c));
    }
    return out;
}

}  // namespace eplb::test
