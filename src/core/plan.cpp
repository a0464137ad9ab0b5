#include <eplb/errors.hpp>
#include <eplb/plan.hpp>

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

}  // namespace eplb
