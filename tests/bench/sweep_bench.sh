#!/bin/sh
# Scaling of `eplb sweep` over MPI ranks (a benchmark, not a test): a synthetic DeepSeek-V3-shaped
# sweep (58 MoE layers x 256 experts, skewed loads; every step a window; topologies 288/8/4/32 and
# 320/8/8/64; policies deepseek and seed) of about 30 s on one rank, run on 1, 2 and 4 ranks
# (4 is oversubscribed on a 2-core machine), REPEATS times each, interleaved so that the load of a
# shared machine spreads over all rank counts. Prints a Markdown table of medians: wall time,
# plans/s, speed-up and parallel efficiency against 1 rank, rank imbalance, and the share of
# the ranks' time spent writing the archive (parts on every rank, and rank 0's commit).
#
#   tests/bench/sweep_bench.sh [EPLB_BINARY] [WORK_DIR]      (REPEATS=3, INPUTS=4, STEPS=64, RANKS="1 2 4")
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
eplb=$(realpath "${1:-$root/build/src/eplb}")
work=${2:-$(mktemp -d /tmp/eplb-sweep-bench-XXXXXX)}
repeats=${REPEATS:-3}
inputs=${INPUTS:-4}
steps=${STEPS:-64}
ranks=${RANKS:-1 2 4}
cores=$(nproc)
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mkdir -p "$work"

# The inputs: eplb HDF5 snapshots of Zipf-like loads, a different expert order per layer and step.
/usr/bin/python3 - "$work" "$inputs" "$steps" <<'EOF'
import sys, h5py, numpy as np
work, inputs, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(20250101)
zipf = 1.0 / np.arange(1, 257) ** 0.9
for i in range(inputs):
    counts = np.empty((steps, 61, 256), dtype=np.int64)
    for t in range(steps):
        for l in range(61):
            counts[t, l] = np.round(rng.permutation(zipf) * rng.uniform(0.5, 1.5, 256) * 4000 + rng.integers(0, 20, 256))
    counts[:, :3] = 0  # three dense layers, as in DeepSeek-V3
    with h5py.File(f"{work}/synthetic-{i}.h5", "w") as f:
        f["logical_count"] = counts
        f.attrs["model"] = "synthetic-v3"
EOF
cat >"$work/sweep.ini" <<EOF
input = synthetic-v3=synthetic-*.h5
windows = each
topology = 288/8/4/32
topology = 320/8/8/64
policy = deepseek
policy = seed
device = cpu
output = plans.h5
EOF

echo "# $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start" >&2
for repeat in $(seq "$repeats"); do
  for n in $ranks; do
    rm -rf "$work/plans.h5" "$work/plans.h5.parts"
    line=$(mpirun -np "$n" --oversubscribe "$eplb" sweep --config "$work/sweep.ini" --progress never | grep '^archive=')
    echo "ranks=$n repeat=$repeat load=$(cut -d' ' -f1 /proc/loadavg) $line" | tee -a "$work/runs.txt" >&2
  done
done

/usr/bin/python3 - "$work/runs.txt" "$cores" <<'EOF'
import sys, statistics
runs, cores = {}, int(sys.argv[2])
for line in open(sys.argv[1]):
    kv = dict(p.split("=", 1) for p in line.split())
    runs.setdefault(int(kv["ranks"]), []).append(kv)
med = lambda rows, key: statistics.median(float(r[key]) for r in rows)
base = med(runs[min(runs)], "plans_per_s")
plans = runs[min(runs)][0]["plans"]
print(f"{plans} plans; medians of {len(runs[min(runs)])} runs per rank count, on {cores} cores\n")
print("| ranks | wall time (s) | plans/s | speed-up | parallel efficiency | rank imbalance | write share | load average |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in sorted(runs):
    rows = runs[n]
    rate = med(rows, "plans_per_s")
    speedup = rate / base
    efficiency = speedup / min(n, cores)
    note = "" if n <= cores else f" (on {cores} cores)"
    print(f"| {n} | {med(rows, 'wall_s'):.1f} | {rate:.1f} | {speedup:.2f} | {100 * efficiency:.0f} %{note} | "
          f"{med(rows, 'rank_imbalance'):.3f} | {100 * med(rows, 'write_share'):.0f} % | {med(rows, 'load'):.1f} |")
EOF
