#!/bin/sh
# Configures (once) and builds eplb into build/ with Ninja and ccache. Extra arguments go to CMake.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build="${EPLB_BUILD_DIR:-$root/build}"
jobs="${EPLB_JOBS:-2}"
if [ ! -f "$build/build.ninja" ] || [ $# -gt 0 ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
fi
cmake --build "$build" -j "$jobs"
