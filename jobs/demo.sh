#!/bin/sh
# Installs what is missing, builds, and plans the bundled DeepSeek-R1 expert loads (SGLang
# statistics, prefill, 16 GPUs on 2 nodes), printing the metrics.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/jobs/setup.sh"
"$root/jobs/build.sh" >/dev/null
build="${EPLB_BUILD_DIR:-$root/build}"
"$build/src/eplb" plan --input "$root/jobs/data/sglang-ds-r1-h20/prefill_ep16_3500_1500.json" \
  --topology 288/8/2/16 --policy seed
