// eplb export: a plan of an archive as a serving engine's deployment file.
#include "cli/commands.hpp"
#include "cli/options.hpp"

#include <eplb/archive.hpp>
#include <eplb/export.hpp>

#include <cstdio>

namespace eplb::cli {

int run_export(const std::vector<std::string>& args) {
    std::string archive_path, format, plan, out;
    std::int64_t model_layers = 0;
    po::options_description options("options");
    options.add_options()
        ("help,h", "show this help")
        ("archive", po::value(&archive_path)->required(), "the plan archive (positional)")
        ("format,f", po::value(&format)->required(), "sglang (--init-expert-location JSON) | trtllm (moe_load_balancer.yaml)")
        ("plan,p", po::value(&plan)->required(), "the plan: its ID or a unique prefix of it")
        ("output,o", po::value(&out)->required(), "the file to write")
        ("model-layers", po::value(&model_layers)->default_value(0),
         "sglang: layers of the model, dense ones included (default: as recorded in the snapshot)");
    if (!parse_arguments(args,
                         "usage: eplb export --format sglang|trtllm --plan ID ARCHIVE -o FILE\n\n"
                         "Writes a plan as SGLang's --init-expert-location file (physical_to_logical_map for every\n"
                         "model layer) or TensorRT-LLM's moe_load_balancer.yaml (static placement).",
                         options, "archive", 1))
        return kSuccess;
    const ExportFormat f = parse_export_format(format);
    const ArchiveReader archive(archive_path);
    const PlanRecord record = archive.read_plan(archive.resolve(plan));
    export_plan(record, f, out, model_layers);
    std::printf("wrote %s: plan %s (%s, topology %s, policy %s) for %s\n", out.c_str(), record.id.c_str(),
                record.source.path.c_str(), record.topology.to_string().c_str(), record.policy.c_str(),
                f == ExportFormat::sglang ? "SGLang" : "TensorRT-LLM");
    return kSuccess;
}

}  // namespace eplb::cli
