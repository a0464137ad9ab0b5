// SGLang recorder dumps: `torch.save(dict(rank=..., logical_count=[T, L_all, E],
// average_utilization_rate_over_window=...), f)`, read with LibTorch's pickle loader. The only
// translation unit that includes LibTorch's serialization headers.
#include "io/raw_snapshot.hpp"

#include <eplb/errors.hpp>

#include <ATen/core/ivalue.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/version.h>

#include <string>
#include <vector>

namespace eplb::io {
namespace {

const char* const kResaveAdvice =
    "re-save it in Python with torch.save(torch.load(f), f, _use_new_zipfile_serialization=True) "
    "(the default since PyTorch 1.6)";
const std::string kLibTorch = "LibTorch " TORCH_VERSION;

bool is_zip(const std::string& bytes) { return bytes.size() >= 4 && bytes.compare(0, 4, "PK\x03\x04") == 0; }

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// LibTorch 1.13's unpickler knows SETITEMS but not SETITEM ('s', 115), which Python's pickler
// emits for a dict with exactly one key.
[[noreturn]] void explain_unpickling_error(const std::string& path, const std::string& message) {
    if (message.find("Unknown opcode") != std::string::npos && message.find("115") != std::string::npos)
        throw FormatError(path + ": " + kLibTorch +
                          " cannot read a torch.save dict with exactly one key (pickle opcode SETITEM); re-save it "
                          "with a second key, e.g. torch.save({'logical_count': t, 'rank': 0}, f)");
    throw FormatError(path + ": cannot read the torch.save file: " + first_line(message));
}

c10::IValue unpickle(const std::string& path, const std::string& bytes) {
    if (!is_zip(bytes)) {
        if (!bytes.empty() && static_cast<unsigned char>(bytes[0]) == 0x80)
            throw FormatError(path + ": legacy (non-zip) torch.save format, which " + kLibTorch + " cannot read; " +
                              kResaveAdvice);
        throw FormatError(path + ": not a torch.save file (no zip archive); " + kResaveAdvice);
    }
    try {
        return torch::jit::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
    } catch (const c10::Error& e) {
        explain_unpickling_error(path, e.what_without_backtrace());
    }
}

std::string describe(const c10::IValue& v) { return v.tagKind(); }

at::Tensor logical_count_of(const std::string& path, const c10::IValue& top) {
    if (top.isTensor()) return top.toTensor();
    if (!top.isGenericDict())
        throw FormatError(path + ": holds a " + describe(top) +
                          "; expected a dict with 'logical_count' (an SGLang recorder dump) or a tensor");
    std::string keys;
    for (const auto& item : top.toGenericDict()) {
        const c10::IValue& key = item.key();
        if (key.isString() && key.toStringRef() == "logical_count") {
            if (!item.value().isTensor())
                throw FormatError(path + ": logical_count is a " + describe(item.value()) + "; expected a tensor");
            return item.value().toTensor();
        }
        keys += (keys.empty() ? "" : ", ") + (key.isString() ? key.toStringRef() : describe(key));
    }
    throw FormatError(path + ": no key 'logical_count' in the dict (keys: " + keys + ")");
}

}  // namespace

RawSnapshot read_torch_raw(const std::string& path, const std::string& bytes) {
    return raw_counts(path, "sglang-torch", logical_count_of(path, unpickle(path, bytes)));
}

}  // namespace eplb::io
