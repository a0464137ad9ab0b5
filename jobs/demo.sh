#!/bin/sh
# Installs what is missing, builds, and plans real recorded expert loads into one plan archive:
# - DeepSeek-R1 loads recorded by SGLang (prefill and decode statistics; the decode file's last
#   column is not an expert count and is zeroed), for 16 GPUs on 2 nodes and 32 GPUs on 4 nodes,
#   with both policies;
# - OLMoE loads per text domain, one window per domain, so that each plan is also scored on the
#   next domain (appended to the same archive).
# Then prints the archive's summary and verifies it.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/jobs/setup.sh"
"$root/jobs/build.sh" >/dev/null
build="${EPLB_BUILD_DIR:-$root/build}"
eplb="$build/src/eplb"
data="$root/jobs/data"
out="${EPLB_DEMO_DIR:-$build/demo}"
archive="$out/plans.h5"
mkdir -p "$out"
rm -rf "$archive" "$archive.parts"

"$eplb" plan "$data/sglang-ds-r1-h20/prefill_ep16_3500_1500.json" "$data/sglang-ds-r1-h20/decode_ep32_3500_1500.json" \
  --zero-columns 255 --topology 288/8/2/16 --topology 288/8/4/32 --policy all --out "$archive" >/dev/null
"$eplb" plan "$data/olmoe-domains/olmoe_domains.h5" --windows each \
  --topology 72/1/1/8 --policy all --out "$archive" --append >/dev/null

"$eplb" inspect "$archive"
echo
"$eplb" verify "$archive"
cat <<HINT

Next:
  $eplb inspect $archive --plan ID --layers        # one plan, layer by layer
  $eplb export --format sglang --plan ID $archive -o expert_location.json
  $root/jobs/plot_archive.py $archive              # balancedness and GPU-load figures (PNG)
HINT
