#include "dist/plan_slices.hpp"

#include <eplb/errors.hpp>

#include <ATen/ops/cat.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstring>

namespace eplb::dist {
namespace {

const auto kLong = at::TensorOptions().dtype(at::kLong);

void put(std::string& out, const void* data, std::size_t bytes) { out.append(static_cast<const char*>(data), bytes); }

void put_int(std::string& out, std::int64_t v) { put(out, &v, sizeof v); }

void put_tensor(std::string& out, const at::Tensor& t) {
    const at::Tensor c = t.to(at::kLong).contiguous();
    put(out, c.data_ptr<std::int64_t>(), static_cast<std::size_t>(c.numel()) * sizeof(std::int64_t));
}

class Reader {
public:
    explicit Reader(const std::string& bytes) : bytes_(bytes) {}

    std::int64_t next_int() {
        std::int64_t v = 0;
        take(&v, sizeof v);
        return v;
    }

    at::Tensor next_tensor(at::IntArrayRef shape) {
        at::Tensor t = at::empty(shape, kLong);
        take(t.data_ptr<std::int64_t>(), static_cast<std::size_t>(t.numel()) * sizeof(std::int64_t));
        return t;
    }

private:
    void take(void* to, std::size_t n) {
        if (at_ + n > bytes_.size()) throw PlanError("a plan sent between ranks is truncated");
        std::memcpy(to, bytes_.data() + at_, n);
        at_ += n;
    }

    const std::string& bytes_;
    std::size_t at_ = 1;  // past the tag
};

}  // namespace

std::string encode_plans(const std::vector<Plan>& plans) {
    std::string out = "P";
    put_int(out, static_cast<std::int64_t>(plans.size()));
    for (const Plan& p : plans) {
        put_int(out, p.num_layers());
        put_int(out, p.num_replicas());
        put_int(out, p.num_experts());
        put_int(out, p.log2phy.size(2));
        put_tensor(out, p.phy2log);
        put_tensor(out, p.log2phy);
        put_tensor(out, p.logcnt);
    }
    return out;
}

std::string encode_error(const std::string& message) { return "E" + message; }

DecodedPlans decode_plans(const std::string& bytes) {
    if (bytes.empty()) throw PlanError("an empty message where plans were expected");
    if (bytes[0] == 'E') return DecodedPlans{{}, bytes.substr(1)};
    Reader in(bytes);
    DecodedPlans out;
    for (std::int64_t n = in.next_int(); n > 0; --n) {
        const std::int64_t L = in.next_int(), R = in.next_int(), E = in.next_int(), X = in.next_int();
        Plan p;
        p.phy2log = in.next_tensor({L, R});
        p.log2phy = in.next_tensor({L, E, X});
        p.logcnt = in.next_tensor({L, E});
        out.plans.push_back(std::move(p));
    }
    return out;
}

Plan join_layer_slices(const std::vector<Plan>& slices) {
    if (slices.empty()) throw PlanError("no layer slices to join");
    if (slices.size() == 1) return slices.front();
    std::int64_t width = 0;
    for (const Plan& s : slices) width = std::max(width, s.log2phy.size(2));
    std::vector<at::Tensor> phy2log, log2phy, logcnt;
    for (const Plan& s : slices) {
        phy2log.push_back(s.phy2log);
        log2phy.push_back(at::constant_pad_nd(s.log2phy, {0, width - s.log2phy.size(2)}, -1));
        logcnt.push_back(s.logcnt);
    }
    return Plan{at::cat(phy2log, 0), at::cat(log2phy, 0), at::cat(logcnt, 0)};
}

}  // namespace eplb::dist
