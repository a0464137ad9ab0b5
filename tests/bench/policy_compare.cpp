// Compares the balanced policy with deepseek and seed on real and synthetic load series and prints
// the README's comparison tables (issue 6 targets). Data files are read from the paths given; none
// is needed (without them only the synthetic series runs).
//
//   policy_compare [--sglang DIR] [--dsv2lite FILE] [--olmoe FILE] [--history K] [--windows T]
//
// --sglang DIR     folder with SGLang's decode_ep32_3500_1500.json and prefill_ep16_3500_1500.json
//                  (jobs/data/sglang-ds-r1-h20); column 255 of the decode file is zeroed (it is not
//                  an expert count, see that folder's README)
// --dsv2lite FILE  HDF5 time series with dataset logical_count [T, L, E]
// --olmoe FILE     OLMoE expert_counts.json: {model: {"expert_counts": {domain: [L][E]}}}; the
//                  olmoe model's domains (in name order) form a series of windows
// --history K      windows the balanced policy plans from (default 4)
// --aggregation A  how it combines them: mean | ema (default mean)
// --ema-decay D    decay of ema (default 0.5)
// --persistence P  share of a load the balanced policy expects to persist into the next window
//                  (default 0.5; 1 turns its steering towards the next window off)
// --windows T      windows of the synthetic DeepSeek-V3 series (default 24)
// --tables LIST    quality,migration (default both); "next" prints only next-window balancedness
#include "io/hdf5_file.hpp"
#include "support/synthetic_series.hpp"

#include <eplb/errors.hpp>
#include <eplb/metrics.hpp>
#include <eplb/rebalance.hpp>
#include <eplb/snapshot.hpp>

#include <ATen/ops/slice.h>
#include <ATen/ops/stack.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace eplb;

struct DataSet {
    std::string name;
    Topology topology;
    at::Tensor windows;  // [T, L, E] float64
};

struct Variant {
    Policy policy;
    PlacementMode mode;
};

// Sums over (window, layer) pairs: aggregate balancedness = mean / max, bound ratio = mean / bound.
struct Totals {
    double mean = 0.0, max = 0.0, bound = 0.0, local = 0.0, tokens = 0.0;
    std::int64_t duplicates = 0, moved = 0, planned_layers = 0, above_reference = 0;

    void add_loads(const Plan& plan, const at::Tensor& w, const Topology& t) {
        const at::Tensor gl = gpu_loads(plan, w, t);
        const double* p = gl.data_ptr<double>();
        const std::int64_t L = gl.size(0), G = gl.size(1);
        for (std::int64_t l = 0; l < L; ++l) {
            double sum = 0.0, peak = 0.0;
            for (std::int64_t g = 0; g < G; ++g) {
                sum += p[l * G + g];
                peak = std::max(peak, p[l * G + g]);
            }
            mean += sum / static_cast<double>(G);
            max += peak;
            tokens += sum;
        }
        local += node_locality(plan, w, t) * w.sum().item<double>();
        duplicates += layer_duplicates(plan, t).sum().item<std::int64_t>();
    }
    double balancedness() const { return max > 0.0 ? mean / max : 1.0; }
    double bound_ratio() const { return bound > 0.0 ? mean / bound : 1.0; }
    double locality() const { return tokens > 0.0 ? local / tokens : 1.0; }
};

at::Tensor history(const at::Tensor& windows, std::int64_t last, std::int64_t k) {
    const std::int64_t first = std::max<std::int64_t>(0, last - k + 1);
    return windows.slice(0, first, last + 1);
}

// History and persistence settings of the balanced policy (the references always sum their windows).
PlanOptions g_history;

PlanOptions options_for(const Variant& v) {
    PlanOptions o = g_history;
    o.policy = v.policy;
    o.mode = v.mode;
    return o;
}

BoundKind bound_kind(const Variant& v, const Topology& t) {
    return v.mode == PlacementMode::hierarchical && t.is_hierarchical() ? BoundKind::hierarchical : BoundKind::global;
}

Totals in_sample(const DataSet& d, const Variant& v) {
    Totals tot;
    for (std::int64_t i = 0; i < d.windows.size(0); ++i) {
        const at::Tensor w = d.windows[i];
        PlanReport report;
        const Plan plan = rebalance(w, d.topology, options_for(v), &report);
        tot.add_loads(plan, w, d.topology);
        tot.bound += lower_bound(w, d.topology, bound_kind(v, d.topology)).sum().item<double>();
        tot.above_reference += static_cast<std::int64_t>(report.above_reference.size());
        tot.planned_layers += w.size(0);
    }
    return tot;
}

Totals next_window(const DataSet& d, const Variant& v, std::int64_t k) {
    Totals tot;
    for (std::int64_t i = 0; i + 1 < d.windows.size(0); ++i) {
        const Plan plan = rebalance(history(d.windows, i, k), d.topology, options_for(v));
        tot.add_loads(plan, d.windows[i + 1], d.topology);
    }
    return tot;
}

// Migration on consecutive windows: the deployed plan of window i-1 is the previous plan of
// window i; compares planning from scratch with migration-aware planning (both with history k).
// The losses are against the best balance on the planning load (max_balance_loss = 0).
struct MigrationTotals {
    Totals scratch, aware;
    double worst_loss_scratch = 0.0, worst_loss_aware = 0.0;
    std::int64_t gpu_transfers_scratch = 0, gpu_transfers_aware = 0, node_transfers_scratch = 0,
                 node_transfers_aware = 0;
};

MigrationTotals migration_run(const DataSet& d, const Variant& v, std::int64_t k) {
    MigrationTotals m;
    Plan deployed = rebalance(history(d.windows, 0, k), d.topology, options_for(v));
    for (std::int64_t i = 1; i < d.windows.size(0); ++i) {
        const at::Tensor h = history(d.windows, i, k);
        PlanOptions o = options_for(v);
        const Plan scratch = rebalance(h, d.topology, o);
        o.previous = &deployed;
        const Plan aware = rebalance(h, d.topology, o);
        // Balance on the planning load (the mean of the history windows).
        const at::Tensor w = h.mean(0);
        m.scratch.add_loads(scratch, w, d.topology);
        m.aware.add_loads(aware, w, d.topology);
        const Migration ms = migration(deployed, scratch, d.topology), ma = migration(deployed, aware, d.topology);
        m.scratch.moved += ms.total_moved_slots();
        m.aware.moved += ma.total_moved_slots();
        m.gpu_transfers_scratch += ms.total_gpu_transfers();
        m.gpu_transfers_aware += ma.total_gpu_transfers();
        m.node_transfers_scratch += ms.total_node_transfers();
        m.node_transfers_aware += ma.total_node_transfers();
        PlanOptions tight = options_for(v);
        tight.max_balance_loss = 0.0;
        const PlanMetrics b = evaluate(rebalance(h, d.topology, tight), w, d.topology, BoundKind::global);
        const PlanMetrics a = evaluate(aware, w, d.topology, BoundKind::global);
        const PlanMetrics s = evaluate(scratch, w, d.topology, BoundKind::global);
        for (std::size_t l = 0; l < a.balancedness.size(); ++l) {
            m.worst_loss_scratch = std::max(m.worst_loss_scratch, 1.0 - s.balancedness[l] / b.balancedness[l]);
            m.worst_loss_aware = std::max(m.worst_loss_aware, 1.0 - a.balancedness[l] / b.balancedness[l]);
        }
        deployed = aware;
    }
    return m;
}

// ---- data sets -------------------------------------------------------------------------

DataSet sglang_set(const std::string& dir, const std::string& file, const std::string& name, bool zero_last) {
    const Snapshot s = read_json_snapshot(dir + "/" + file);
    at::Tensor w = s.steps.clone();
    if (zero_last) w.select(2, w.size(2) - 1).zero_();
    return {name, Topology{288, 8, 4, 32}, w};
}

DataSet dsv2lite_set(const std::string& path) {
    const H5::H5File f = io::open_hdf5_for_reading(path);
    const at::Tensor counts = io::read_tensor(f, "logical_count", path).to(at::kDouble);
    return {"DS-V2-Lite (43 windows, 26x64)", Topology{80, 8, 2, 16}, counts};
}

DataSet olmoe_set(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw FormatError(path + ": cannot open the file");
    const nlohmann::json j = nlohmann::json::parse(in);
    std::vector<at::Tensor> domains;
    for (const auto& [domain, rows] : j.at("olmoe").at("expert_counts").items()) {
        std::vector<double> v;
        for (const auto& row : rows)
            for (const auto& x : row) v.push_back(x.get<double>());
        const std::int64_t L = static_cast<std::int64_t>(rows.size()), E = static_cast<std::int64_t>(v.size()) / L;
        domains.push_back(at::from_blob(v.data(), {L, E}, at::TensorOptions().dtype(at::kDouble)).clone());
    }
    return {"OLMoE domains (6 windows, 3x64)", Topology{80, 8, 2, 16}, at::stack(domains)};
}

DataSet synthetic_set(std::int64_t windows) {
    test::SeriesShape shape;
    shape.windows = windows;
    return {"synthetic DS-V3 (" + std::to_string(windows) + " windows, 58x256)", Topology{288, 8, 4, 32},
            test::synthetic_series(shape)};
}

// ---- report ----------------------------------------------------------------------------

void print_quality(const std::vector<DataSet>& sets, std::int64_t k) {
    const std::vector<Variant> variants{
        {Policy::deepseek, PlacementMode::hierarchical}, {Policy::seed, PlacementMode::hierarchical},
        {Policy::balanced, PlacementMode::hierarchical}, {Policy::balanced, PlacementMode::relaxed},
        {Policy::deepseek, PlacementMode::global},       {Policy::seed, PlacementMode::global},
        {Policy::balanced, PlacementMode::global}};
    std::printf("| data set | mode | policy | in-sample | bound | in-sample / bound | next window (k=1) | "
                "next window (k=%lld) | duplicates | node locality | layers above deepseek |\n",
                static_cast<long long>(k));
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const DataSet& d : sets) {
        for (const Variant& v : variants) {
            const Totals in = in_sample(d, v);
            const bool series = d.windows.size(0) > 1;
            const std::string n1 = series ? std::to_string(next_window(d, v, 1).balancedness()).substr(0, 6) : "-";
            const std::string nk = series ? std::to_string(next_window(d, v, k).balancedness()).substr(0, 6) : "-";
            std::printf("| %s | %s | %s | %.4f | %.4f | %.4f | %s | %s | %lld | %.3f | %s |\n", d.name.c_str(),
                        to_string(v.mode).c_str(), to_string(v.policy).c_str(), in.balancedness(), in.bound_ratio(),
                        in.balancedness() / in.bound_ratio(), n1.c_str(), nk.c_str(),
                        static_cast<long long>(in.duplicates), in.locality(),
                        v.policy == Policy::balanced ? (std::to_string(in.above_reference) + " / " +
                                                        std::to_string(in.planned_layers)).c_str()
                                                     : "");
            std::fflush(stdout);
        }
    }
}

void print_next_window(const std::vector<DataSet>& sets, std::int64_t k) {
    std::printf("| data set | mode | policy | next window (k=1) | next window (k=%lld) |\n|---|---|---|---|---|\n",
                static_cast<long long>(k));
    for (const DataSet& d : sets) {
        if (d.windows.size(0) < 2) continue;
        for (const PlacementMode mode : {PlacementMode::hierarchical, PlacementMode::global})
            for (const Policy policy : {Policy::deepseek, Policy::seed, Policy::balanced}) {
                const Variant v{policy, mode};
                std::printf("| %s | %s | %s | %.4f | %.4f |\n", d.name.c_str(), to_string(mode).c_str(),
                            to_string(policy).c_str(), next_window(d, v, 1).balancedness(),
                            next_window(d, v, k).balancedness());
                std::fflush(stdout);
            }
    }
}

void print_migration(const std::vector<DataSet>& sets, std::int64_t k) {
    std::printf("\n| data set | mode | moved replicas: scratch | migration-aware | fewer | GPU transfers: scratch | "
                "aware | node transfers: scratch | aware | balancedness: scratch | aware | worst layer loss: scratch | aware |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const DataSet& d : sets) {
        if (d.windows.size(0) < 2) continue;
        for (const PlacementMode mode : {PlacementMode::hierarchical, PlacementMode::relaxed, PlacementMode::global}) {
            const MigrationTotals m = migration_run(d, Variant{Policy::balanced, mode}, k);
            std::printf("| %s | %s | %lld | %lld | %.1f %% | %lld | %lld | %lld | %lld | %.4f | %.4f | %.2f %% | %.2f %% |\n",
                        d.name.c_str(), to_string(mode).c_str(), static_cast<long long>(m.scratch.moved),
                        static_cast<long long>(m.aware.moved),
                        100.0 * (1.0 - static_cast<double>(m.aware.moved) / std::max<std::int64_t>(1, m.scratch.moved)),
                        static_cast<long long>(m.gpu_transfers_scratch), static_cast<long long>(m.gpu_transfers_aware),
                        static_cast<long long>(m.node_transfers_scratch), static_cast<long long>(m.node_transfers_aware),
                        m.scratch.balancedness(), m.aware.balancedness(), 100.0 * m.worst_loss_scratch,
                        100.0 * m.worst_loss_aware);
            std::fflush(stdout);
        }
    }
}

int run(int argc, char** argv) {
    std::map<std::string, std::string> args;
    for (int i = 1; i + 1 < argc; i += 2) args[argv[i]] = argv[i + 1];
    if (argc % 2 == 0) throw UsageError("options come in pairs: --name value (see the comment at the top)");
    for (const auto& [key, value] : args)
        if (key != "--sglang" && key != "--dsv2lite" && key != "--olmoe" && key != "--history" && key != "--windows" &&
            key != "--aggregation" && key != "--ema-decay" && key != "--persistence" && key != "--tables")
            throw UsageError("unknown option " + key);
    const std::int64_t k = args.count("--history") ? std::stoll(args["--history"]) : 4;
    if (args.count("--aggregation")) g_history.aggregation = parse_history_aggregation(args["--aggregation"]);
    if (args.count("--ema-decay")) g_history.ema_decay = std::stod(args["--ema-decay"]);
    if (args.count("--persistence")) g_history.persistence = std::stod(args["--persistence"]);
    const std::string tables = args.count("--tables") ? args["--tables"] : "quality,migration";
    const std::int64_t windows = args.count("--windows") ? std::stoll(args["--windows"]) : 24;
    std::vector<DataSet> sets;
    if (args.count("--sglang")) {
        sets.push_back(sglang_set(args["--sglang"], "decode_ep32_3500_1500.json", "SGLang DS-R1 decode", true));
        sets.push_back(sglang_set(args["--sglang"], "prefill_ep16_3500_1500.json", "SGLang DS-R1 prefill", false));
    }
    if (args.count("--dsv2lite")) sets.push_back(dsv2lite_set(args["--dsv2lite"]));
    if (args.count("--olmoe")) sets.push_back(olmoe_set(args["--olmoe"]));
    sets.push_back(synthetic_set(windows));
    if (tables.find("quality") != std::string::npos) print_quality(sets, k);
    if (tables.find("next") != std::string::npos) print_next_window(sets, k);
    if (tables.find("migration") != std::string::npos) print_migration(sets, k);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "policy_compare: error: " << e.what() << "\n";
        return 1;
    }
}
