#include <eplb/errors.hpp>
#include <eplb/plan.hpp>

#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <string>
#include <vector>

namespace eplb {
namespace {

void require_int64_matrix(const at::Tensor& t, const char* name, std::int64_t dims) {
    if (!t.defined()) throw PlanError(std::string("plan has no ") + name);
    if (t.scalar_type() != at::kLong)
        throw PlanError(std::string(name) + " has dtype " + std::string(c10::toString(t.scalar_type())) +
                        "; expected int64");
    if (t.dim() != dims)
        throw PlanError(std::string(name) + " has " + std::to_string(t.dim()) + " dimensions; expected " +
                        std::to_string(dims));
    if (!t.device().is_cpu()) throw PlanError(std::string(name) + " is not on the CPU");
}

std::string where(std::int64_t layer) { return "layer " + std::to_string(layer); }

}  // namespace

void Plan::validate() const {
    require_int64_matrix(phy2log, "phy2log", 2);
    require_int64_matrix(logcnt, "logcnt", 2);
    require_int64_matrix(log2phy, "log2phy", 3);
    const std::int64_t L = phy2log.size(0), R = phy2log.size(1), E = logcnt.size(1);
    if (logcnt.size(0) != L || log2phy.size(0) != L || log2phy.size(1) != E)
        throw PlanError("plan shapes disagree: phy2log [" + std::to_string(L) + "," + std::to_string(R) +
                        "], logcnt [" + std::to_string(logcnt.size(0)) + "," + std::to_string(E) + "], log2phy [" +
                        std::to_string(log2phy.size(0)) + "," + std::to_string(log2phy.size(1)) + "," +
                        std::to_string(log2phy.size(2)) + "]");
    const std::int64_t X = log2phy.size(2);
    const auto p2l = phy2log.contiguous();
    const auto cnt = logcnt.contiguous();
    const auto l2p = log2phy.contiguous();
    const std::int64_t* pp = p2l.data_ptr<std::int64_t>();
    const std::int64_t* cp = cnt.data_ptr<std::int64_t>();
    const std::int64_t* lp = l2p.data_ptr<std::int64_t>();
    std::vector<std::int64_t> seen(static_cast<std::size_t>(E));
    for (std::int64_t l = 0; l < L; ++l) {
        std::fill(seen.begin(), seen.end(), 0);
        for (std::int64_t p = 0; p < R; ++p) {
            const std::int64_t e = pp[l * R + p];
            if (e < 0 || e >= E)
                throw PlanError(where(l) + ", slot " + std::to_string(p) + ": phy2log=" + std::to_string(e) +
                                " is outside [0, " + std::to_string(E) + ")");
            ++seen[e];
        }
        for (std::int64_t e = 0; e < E; ++e) {
            const std::int64_t c = cp[l * E + e];
            const std::string expert = where(l) + ", expert " + std::to_string(e);
            if (c < 1) throw PlanError(expert + ": logcnt=" + std::to_string(c) + ", but every expert needs a replica");
            if (c != seen[e])
                throw PlanError(expert + ": logcnt=" + std::to_string(c) + " but phy2log holds it " +
                                std::to_string(seen[e]) + " times");
            if (c > X) throw PlanError(expert + ": logcnt=" + std::to_string(c) + " exceeds log2phy width " + std::to_string(X));
            for (std::int64_t k = 0; k < X; ++k) {
                const std::int64_t slot = lp[(l * E + e) * X + k];
                if (k >= c) {
                    if (slot != -1)
                        throw PlanError(expert + ": log2phy[" + std::to_string(k) + "]=" + std::to_string(slot) +
                                        " beyond its " + std::to_string(c) + " replicas; expected -1");
                    continue;
                }
                if (slot < 0 || slot >= R || pp[l * R + slot] != e)
                    throw PlanError(expert + ": log2phy[" + std::to_string(k) + "]=" + std::to_string(slot) +
                                    " is not a slot holding this expert");
                for (std::int64_t k2 = 0; k2 < k; ++k2)
                    if (lp[(l * E + e) * X + k2] == slot)
                        throw PlanError(expert + ": log2phy lists slot " + std::to_string(slot) + " twice");
            }
        }
    }
}

Plan plan_from_phy2log(const at::Tensor& phy2log, std::int64_t num_experts) {
    if (!phy2log.defined() || phy2log.dim() != 2 || !at::isIntegralType(phy2log.scalar_type(), /*includeBool=*/false))
        throw PlanError("phy2log must be a [layers, slots] integer table");
    const at::Tensor p2l = phy2log.to(at::kCPU).to(at::kLong).contiguous();
    const std::int64_t L = p2l.size(0), R = p2l.size(1), E = num_experts;
    const std::int64_t* pp = p2l.data_ptr<std::int64_t>();
    at::Tensor logcnt = at::zeros({L, E}, at::TensorOptions().dtype(at::kLong));
    std::int64_t* cp = logcnt.data_ptr<std::int64_t>();
    for (std::int64_t l = 0; l < L; ++l)
        for (std::int64_t p = 0; p < R; ++p) {
            const std::int64_t e = pp[l * R + p];
            if (e < 0 || e >= E)
                throw PlanError(where(l) + ", slot " + std::to_string(p) + ": phy2log=" + std::to_string(e) +
                                " is outside [0, " + std::to_string(E) + ")");
            ++cp[l * E + e];
        }
    for (std::int64_t i = 0; i < L * E; ++i)
        if (cp[i] == 0)
            throw PlanError(where(i / E) + ", expert " + std::to_string(i % E) + ": no slot holds it");
    const std::int64_t X = L * E > 0 ? *std::max_element(cp, cp + L * E) : 1;
    at::Tensor log2phy = at::full({L, E, X}, -1, at::TensorOptions().dtype(at::kLong));
    std::int64_t* lp = log2phy.data_ptr<std::int64_t>();
    std::vector<std::int64_t> next(static_cast<std::size_t>(E));
    for (std::int64_t l = 0; l < L; ++l) {
        std::fill(next.begin(), next.end(), 0);
        for (std::int64_t p = 0; p < R; ++p) {
            const std::int64_t e = pp[l * R + p];
            lp[(l * E + e) * X + next[e]++] = p;
        }
    }
    return Plan{p2l, log2phy, logcnt};
}

}  // namespace eplb
