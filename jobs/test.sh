#!/bin/sh
# Installs what is missing (with the Slurm packages of the job tests), builds, and runs the whole
# test suite. MPI tests run eplb as root when the suite does (OMPI_ALLOW_RUN_AS_ROOT, set by ctest).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/jobs/setup.sh" --tests
"$root/jobs/build.sh"
cd "${EPLB_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "${EPLB_JOBS:-2}"
