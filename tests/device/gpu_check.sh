#!/usr/bin/env bash
# GPU check of the batched engine, in one go and in under 5 minutes on a 16-core GPU machine:
#   1. reports what the machine has (GPU, PyTorch, compilers, CMake, GoogleTest, Benchmark, ...);
#   2. builds the core and its tests alone (EPLB_CORE_ONLY) against the machine's PyTorch LibTorch;
#   3. checks on CUDA that the batched engine gives exactly the native engine's plans (GoogleTest
#      suite with EPLB_TEST_DEVICE=cuda, or the stand-alone eplb_device_check without GoogleTest);
#   4. benchmarks layers/s per B for native (CPU) and batched (CPU, CUDA) and prints a table with
#      the CPU-vs-CUDA crossover that sets kAutoCudaMinLayers (include/eplb/rebalance.hpp);
#   5. times one plan of each policy on one core of the host (eplb_bench, interleaved repetitions).
#
#   tests/device/gpu_check.sh                 # on the GPU machine, from the repository root
#   EPLB_GPU_CHECK_SKIP_CUDA=1 tests/device/gpu_check.sh   # dry run on a machine without a GPU
#
# GoogleTest and Google Benchmark come from the source trees in .device/src when both are there, else
# from the system when installed, else from whichever source tree exists
# in .device/src (made by tests/device/fetch_sources.sh; carry `.device` to the machine), else the
# stand-alone check and timer stand in. Logs and the table go to $OUT/gpu_check when OUT is set.
#
# Environment: PYTHON (python with torch; default python3), EPLB_JOBS (build jobs; default nproc),
# EPLB_GPU_BUILD_DIR (default /tmp/eplb-gpu-check), EPLB_GPU_CHECK_SKIP_CUDA=1 (no CUDA stage),
# EPLB_GPU_CHECK_FORCE_SOURCES=1|0 (build GoogleTest/Benchmark from .device/src even if installed, or
# not; default: from .device/src whenever it holds both),
# EPLB_BENCH_LAYERS (default 58,232,580,1160,2900,5800,14500,58000).
set -eu
set -o pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
start_time=$(date +%s)
logs="${OUT:-/tmp}/gpu_check"
build="${EPLB_GPU_BUILD_DIR:-/tmp/eplb-gpu-check}"
jobs="${EPLB_JOBS:-$(nproc 2>/dev/null || echo 4)}"
skip_cuda="${EPLB_GPU_CHECK_SKIP_CUDA:-0}"
# Carried sources win over installed packages: an installed Google Benchmark built by another
# toolchain crashed at start-up on the first GPU machine measured.
force_sources="${EPLB_GPU_CHECK_FORCE_SOURCES:-auto}"
if [ "$force_sources" = auto ]; then
  [ -f "$root/.device/src/googletest/CMakeLists.txt" ] && [ -f "$root/.device/src/benchmark/CMakeLists.txt" ] \
    && force_sources=1 || force_sources=0
fi
bench_layers="${EPLB_BENCH_LAYERS:-58,232,580,1160,2900,5800,14500,58000}"
mkdir -p "$logs"
failures=()

stage() { printf '\n=== [%4ss] %s\n' "$(( $(date +%s) - start_time ))" "$*"; }
note() { printf '    %s\n' "$*"; }
fail() { note "FAILED: $*"; failures+=("$*"); }
have() { command -v "$1" >/dev/null 2>&1; }

# ---- 1. what the machine has ------------------------------------------------------------------
stage "machine (logs in $logs)"
note "host $(hostname), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) memory"
[ -r /etc/os-release ] && note "os: $(. /etc/os-release && echo "$PRETTY_NAME")"
if have nvidia-smi; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/    gpu: /' || true
else
  note "gpu: nvidia-smi not found"
fi
PYTHON="${PYTHON:-python3}"
have "$PYTHON" || PYTHON=python
torch_prefix=""
if have "$PYTHON" && "$PYTHON" - > "$logs/torch.txt" 2>&1 <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cuda available", torch.cuda.is_available(),
      "devices", torch.cuda.device_count(), *(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
print("prefix", torch.utils.cmake_prefix_path)
PY
then
  note "$(grep '^torch' "$logs/torch.txt")"
  torch_prefix=$(sed -n 's/^prefix //p' "$logs/torch.txt")
else
  note "python with torch: not found ($PYTHON): $(tail -1 "$logs/torch.txt" 2>/dev/null)"
fi
nvcc_path=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
note "nvcc: ${nvcc_path:-not found} $( [ -n "$nvcc_path" ] && "$nvcc_path" --version | tail -2 | head -1)"
note "c++: $(c++ --version 2>/dev/null | head -1 || echo 'not found')"
note "cmake: $(cmake --version 2>/dev/null | head -1 || echo 'not found'); ninja: $(ninja --version 2>/dev/null || echo 'not found'); ccache: $(have ccache && echo yes || echo no)"
for lib in gtest benchmark hdf5 boost_program_options mpi; do
  found=$(ls /usr/lib/x86_64-linux-gnu/lib${lib}.* /usr/lib64/lib${lib}.* /usr/local/lib/lib${lib}.* 2>/dev/null | head -1 || true)
  note "lib$lib: ${found:-not found}"
done
for src in googletest benchmark; do
  note ".device/src/$src: $( [ -f "$root/.device/src/$src/CMakeLists.txt" ] && echo present || echo absent)"
done

if [ -z "$torch_prefix" ] || ! have cmake || ! have c++; then
  fail "a python with torch, cmake and a C++ compiler are needed to build"
  printf '\n%s\n' "gpu_check: ${#failures[@]} stage(s) failed: ${failures[*]}"
  exit 1
fi
cuda_ok=$(grep -q "cuda available True" "$logs/torch.txt" && echo 1 || echo 0)
if [ "$skip_cuda" != 1 ] && [ "$cuda_ok" != 1 ]; then
  note "torch sees no CUDA device: the CUDA stages will be skipped"
  skip_cuda=1
  fail "no CUDA device visible to torch"
fi

# ---- 2. build ------------------------------------------------------------------------------------
stage "configure the core (EPLB_CORE_ONLY) against $torch_prefix"
torch_lib="$torch_prefix/../../lib"
cmake_args=(-S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEPLB_CORE_ONLY=ON
            "-DCMAKE_PREFIX_PATH=$torch_prefix" -DCMAKE_POLICY_VERSION_MINIMUM=3.5)
have ninja && cmake_args+=(-G Ninja)
# The wheel's own libraries, even where another LibTorch is installed system-wide.
[ -f "$torch_lib/libc10.so" ] && cmake_args+=("-Dc10_LIBRARY=$torch_lib/libc10.so" "-DTORCH_LIBRARY=$torch_lib/libtorch.so")
[ -n "$nvcc_path" ] && cmake_args+=("-DCMAKE_CUDA_COMPILER=$nvcc_path" "-DCUDAToolkit_ROOT=$(dirname "$(dirname "$nvcc_path")")")
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"  # we compile no CUDA code: skip the probe
[ -f "$root/.device/src/googletest/CMakeLists.txt" ] && cmake_args+=("-DEPLB_GTEST_SOURCE_DIR=$root/.device/src/googletest")
[ -f "$root/.device/src/benchmark/CMakeLists.txt" ] && cmake_args+=("-DEPLB_BENCHMARK_SOURCE_DIR=$root/.device/src/benchmark")
[ "$force_sources" = 1 ] && cmake_args+=(-DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON)
rm -rf "$build"
if ! cmake "${cmake_args[@]}" > "$logs/configure.log" 2>&1; then
  tail -30 "$logs/configure.log"
  fail "configure"
  printf '\n%s\n' "gpu_check: ${#failures[@]} stage(s) failed: ${failures[*]}"
  exit 1
fi
grep -E "Found Torch|GoogleTest not found|Benchmark not found" "$logs/configure.log" | sed 's/^/    /' || true

stage "build the core, its tests and the stand-alone check ($jobs jobs)"
if ! cmake --build "$build" -j "$jobs" --target eplb_core eplb_device_check > "$logs/build.log" 2>&1; then
  tail -40 "$logs/build.log"
  fail "build of eplb_core"
  printf '\n%s\n' "gpu_check: ${#failures[@]} stage(s) failed: ${failures[*]}"
  exit 1
fi
have_gtest=0
if grep -q "eplb_batched_tests" "$build/CTestTestfile.cmake" "$build/tests/CTestTestfile.cmake" 2>/dev/null; then
  if cmake --build "$build" -j "$jobs" --target eplb_core_tests eplb_batched_tests >> "$logs/build.log" 2>&1; then
    have_gtest=1
  else
    tail -20 "$logs/build.log"
    fail "build of the GoogleTest suites (the stand-alone check stands in)"
  fi
fi
have_bench=0
if grep -q "eplb_batched_bench" "$build/build.ninja" "$build/Makefile" "$build/tests/bench/Makefile" 2>/dev/null; then
  if cmake --build "$build" -j "$jobs" --target eplb_batched_bench eplb_bench >> "$logs/build.log" 2>&1; then
    have_bench=1
  else
    tail -20 "$logs/build.log"
    note "Google Benchmark build failed: eplb_device_check --time stands in"
  fi
fi
note "GoogleTest suites: $( [ $have_gtest = 1 ] && echo built || echo 'not available')," \
     "Google Benchmark: $( [ $have_bench = 1 ] && echo built || echo 'not available')"

# ---- 3. equality on CUDA -------------------------------------------------------------------------
devices=(cpu)
[ "$skip_cuda" != 1 ] && devices+=(cuda)
for device in "${devices[@]}"; do
  stage "batched engine on $device == native engine"
  if [ $have_gtest = 1 ]; then
    if [ "$device" = cpu ]; then
      (cd "$build" && ./tests/eplb_core_tests --gtest_color=no > "$logs/core_tests.log" 2>&1) \
        && note "eplb_core_tests: $(grep -E '^\[  PASSED  \]' "$logs/core_tests.log")" \
        || { tail -30 "$logs/core_tests.log"; fail "eplb_core_tests"; }
    fi
    (cd "$build" && EPLB_TEST_DEVICE=$device ./tests/eplb_batched_tests --gtest_color=no > "$logs/batched_tests_$device.log" 2>&1) \
      && note "eplb_batched_tests on $device: $(grep -E '^\[  PASSED  \]' "$logs/batched_tests_$device.log")" \
      || { grep -E "Failure|FAILED|DIFFERS|differs|Expected|Which is" "$logs/batched_tests_$device.log" | head -30 || true
           fail "eplb_batched_tests on $device"; }
  fi
  # More random cases, with another seed than the GoogleTest suite's.
  random=300
  [ "$device" = cuda ] && random=1000
  ("$build/tests/eplb_device_check" --device "$device" --random $random --seed 77 > "$logs/device_check_$device.log" 2>&1) \
    && tail -3 "$logs/device_check_$device.log" | sed 's/^/    /' \
    || { tail -15 "$logs/device_check_$device.log"; fail "eplb_device_check on $device"; }
done

# ---- 4. benchmark --------------------------------------------------------------------------------
stage "benchmark: layers/s at B = $bench_layers DeepSeek-V3-shaped layers (288/8/4/32)"
bench_out="$logs/bench.txt"
: > "$bench_out"
small_layers=$(echo "$bench_layers" | tr ',' '\n' | awk '$1 <= 5800' | paste -sd, -)
run_bench() {  # engines layers
  if [ $have_bench = 1 ]; then
    "$build/tests/bench/eplb_batched_bench" --engines="$1" --layers="$2" --benchmark_min_time=0.3 \
      --benchmark_format=json --benchmark_out="$logs/bench_$1.json" --benchmark_out_format=json \
      > "$logs/bench_$1.log" 2>&1 || return 1
    "$PYTHON" - "$logs/bench_$1.json" >> "$bench_out" <<'PY'
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    name = b["name"].rsplit("/real_time", 1)[0]
    print(name, b["real_time"] if b["time_unit"] == "ms" else b["real_time"] / 1e6, b["items_per_second"])
PY
  else
    local device=cpu
    [ "$1" = batched-cuda ] && device=cuda
    "$build/tests/eplb_device_check" --device "$device" --time "$2" --repetitions 5 > "$logs/bench_$1.log" 2>&1 || return 1
    grep -E "^plan/[a-z]+/$1/" "$logs/bench_$1.log" >> "$bench_out" || true
  fi
}
run_bench native "$bench_layers" || fail "benchmark native"
if [ -n "$small_layers" ]; then
  run_bench batched-cpu "$small_layers" || fail "benchmark batched-cpu"
fi
if [ "$skip_cuda" != 1 ]; then
  run_bench batched-cuda "$bench_layers" || fail "benchmark batched-cuda"
fi
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
"$PYTHON" - "$bench_out" "${gpu_name:-no GPU}" "$(nproc)" > "$logs/table.md" <<'PY' || fail "benchmark table"
import collections, sys
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    name, ms, rate = line.split()
    _, policy, engine, layers = name.split("/")
    rows[(policy, int(layers))][engine] = (float(ms), float(rate))
engines = ["native", "batched-cpu", "batched-cuda"]
print(f"layers/s (median wall time per call in ms); native: CPU, {sys.argv[3]} threads; batched-cuda: {sys.argv[2]}\n")
print("| policy | B (layers) | " + " | ".join(engines) + " | cuda / native |")
print("|---|---:|" + "---:|" * len(engines) + "---:|")
crossover = {}
for (policy, layers) in sorted(rows):
    r = rows[(policy, layers)]
    cells = [f"{r[e][1]:,.0f} ({r[e][0]:.2f} ms)" if e in r else "-" for e in engines]
    ratio = r["batched-cuda"][1] / r["native"][1] if "batched-cuda" in r and "native" in r else None
    print(f"| {policy} | {layers:,} | " + " | ".join(cells) + (f" | {ratio:.2f} |" if ratio else " | - |"))
    if ratio is not None:
        crossover.setdefault(policy, [])
        crossover[policy].append((layers, ratio))
print()
suggest = []
for policy, points in crossover.items():
    faster = [l for l, q in points if q > 1.0]
    # The smallest B from which CUDA stays faster at every larger B measured.
    first = next((l for i, (l, q) in enumerate(points) if all(q2 > 1.0 for _, q2 in points[i:])), None)
    print(f"crossover {policy}: " + (f"CUDA faster from B = {first:,} layers" if first else "CUDA never faster in this range"))
    if first: suggest.append(first)
if suggest:
    print(f"suggested kAutoCudaMinLayers = {max(suggest)}")
PY
cat "$logs/table.md" || true

# ---- 5. the policies on one core of this host ---------------------------------------------------
# The per-plan times of rebalance_bench.cpp (one thread, 58 x 256, 288/8/4/32), repetitions
# interleaved at random so that a busy spell falls on every policy alike.
if [ $have_bench = 1 ]; then
  stage "policies on one core: eplb_bench, medians of 10 interleaved repetitions"
  note "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  if "$build/tests/bench/eplb_bench" --benchmark_repetitions=10 --benchmark_report_aggregates_only=true \
       --benchmark_enable_random_interleaving=true --benchmark_min_time=0.2 > "$logs/policy_bench.log" 2>&1; then
    grep -E '_median ' "$logs/policy_bench.log" | awk '{printf "    %-40s %10s %s\n", $1, $2, $3}'
  else
    tail -10 "$logs/policy_bench.log"
    fail "eplb_bench"
  fi
fi

stage "done"
if [ ${#failures[@]} -gt 0 ]; then
  printf 'gpu_check: %d stage(s) failed: %s\n' "${#failures[@]}" "$(IFS=';'; echo "${failures[*]}")"
  exit 1
fi
echo "gpu_check: every stage passed"
