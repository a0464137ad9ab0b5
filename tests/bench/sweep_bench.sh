#!/bin/sh
# Scaling of `eplb sweep` over MPI ranks (a benchmark, not a test): a synthetic DeepSeek-V3-shaped
# sweep (58 MoE layers x 256 experts, skewed loads; every step a window; topologies 288/8/4/32 and
# 320/8/8/64; policies deepseek and seed) of about 30 s on one rank, run on 1, 2 and 4 ranks
# (4 is oversubscribed on a 2-core machine), REPEATS times each, interleaved so that the load of a
# shared machine spreads over all rank counts. Prints a Markdown table of medians: wall time,
# plans/s, speed-up and parallel efficiency against 1 rank (against the cores when there are more
# ranks than cores), CPU time of all processes and CPU efficiency (the work added by running on
# more ranks, whatever else loads the machine), rank imbalance, and the share of the ranks' time
# spent writing the archive (parts on every rank, and rank 0's commit).
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

/usr/bin/python3 - "$eplb" "$work" "$repeats" "$cores" $ranks <<'EOF'
import os, resource, statistics, subprocess, sys, time
eplb, work, repeats, cores, ranks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), [int(r) for r in sys.argv[5:]]
load = lambda: float(open("/proc/loadavg").read().split()[0])
print(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {cores} cores, load average {load()} at the start", file=sys.stderr)
runs = {n: [] for n in ranks}
for repeat in range(repeats):
    for n in ranks:  # interleaved, so that the load of a shared machine spreads over all rank counts
        subprocess.run(["rm", "-rf", f"{work}/plans.h5", f"{work}/plans.h5.parts"], check=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(["mpirun", "-np", str(n), "--oversubscribe", eplb, "sweep", "--config", f"{work}/sweep.ini",
                              "--progress", "never"], check=True, capture_output=True, text=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        line = next(l for l in out.splitlines() if l.startswith("archive="))
        run = dict(p.split("=", 1) for p in line.split())
        run["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        run["load"] = load()
        runs[n].append(run)
        print(f"ranks={n} repeat={repeat + 1} cpu_s={run['cpu_s']:.1f} load={run['load']} {line}", file=sys.stderr)

med = lambda rows, key: statistics.median(float(r[key]) for r in rows)
one = min(ranks)
base_rate, base_cpu = med(runs[one], "plans_per_s"), med(runs[one], "cpu_s")
print(f"{runs[one][0]['plans']} plans; medians of {repeats} runs per rank count on {cores} cores\n")
print("| ranks | wall time (s) | plans/s | speed-up | parallel efficiency | CPU time (s) | CPU efficiency | rank imbalance | write share | load average |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in ranks:
    rows = runs[n]
    speedup = med(rows, "plans_per_s") / base_rate
    efficiency = speedup / min(n, cores)
    print(f"| {n}{' (on %d cores)' % cores if n > cores else ''} | {med(rows, 'wall_s'):.1f} | {med(rows, 'plans_per_s'):.1f} | "
          f"{speedup:.2f} | {100 * efficiency:.0f} % | {med(rows, 'cpu_s'):.1f} | {100 * base_cpu / med(rows, 'cpu_s'):.0f} % | "
          f"{med(rows, 'rank_imbalance'):.3f} | {100 * med(rows, 'write_share'):.0f} % | {med(rows, 'load'):.1f} |")
EOF
