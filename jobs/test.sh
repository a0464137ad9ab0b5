#!/bin/sh
# Installs what is missing, builds, and runs the whole test suite.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/jobs/setup.sh"
"$root/jobs/build.sh"
cd "${EPLB_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "${EPLB_JOBS:-2}"
