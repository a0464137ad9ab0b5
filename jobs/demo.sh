#!/bin/sh
# Installs what is missing, builds, and sweeps real recorded expert loads into one plan archive
# with 2 MPI ranks (mpirun -np 2, the way a Slurm job runs it with srun):
# - DeepSeek-R1 loads recorded by SGLang (prefill and decode statistics; the decode file's last
#   column is not an expert count and is zeroed), for 16 GPUs on 2 nodes and 32 GPUs on 4 nodes,
#   with every policy: deepseek, seed and balanced (jobs/configs/demo-deepseek.ini);
# - OLMoE loads per text domain, one window per domain, so that each plan is also scored on the
#   next domain, added to the same archive (jobs/configs/demo-olmoe.ini, --resume keeps what the
#   archive holds).
# Then prints the archive's summary and verifies it.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/jobs/setup.sh"
"$root/jobs/build.sh" >/dev/null
build="${EPLB_BUILD_DIR:-$root/build}"
eplb="$build/src/eplb"
out="${EPLB_DEMO_DIR:-$build/demo}"
archive="$out/plans.h5"
mkdir -p "$out"
rm -rf "$archive" "$archive.parts"
# Open MPI refuses to start as root unless told that it is meant.
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mpirun="mpirun -np 2 --oversubscribe"

$mpirun "$eplb" sweep --config "$root/jobs/configs/demo-deepseek.ini" --output "$archive"
$mpirun "$eplb" sweep --config "$root/jobs/configs/demo-olmoe.ini" --output "$archive" --resume
echo

"$eplb" inspect "$archive"
echo
"$eplb" verify "$archive"
cat <<HINT

Next:
  $eplb inspect $archive --plan ID --layers        # one plan, layer by layer
  $eplb export --format sglang --plan ID $archive -o expert_location.json
  $root/jobs/plot_archive.py $archive              # balancedness and GPU-load figures (PNG)
HINT
