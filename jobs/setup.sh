#!/bin/sh
# Installs every Debian package eplb needs to build, run and test. Idempotent and quiet when all
# is present; runs apt-get as root, or through sudo otherwise.
set -eu

PACKAGES="
  cmake ninja-build g++ ccache pkg-config
  libtorch-dev
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools
  libboost-program-options-dev
  nlohmann-json3-dev libyaml-cpp-dev libssl-dev
  libgtest-dev libbenchmark-dev
  python3 python3-torch python3-h5py python3-matplotlib python3-numpy python3-pandas
"
# --tests adds what only the test suite needs: a Slurm cluster of one node (the job tests start
# their own slurmctld, slurmd and munged; DESIGN.md section 7). EPLB_EXTRA_PACKAGES adds others.
TEST_PACKAGES="slurm-wlm munge"
if [ "${1:-}" = "--tests" ]; then PACKAGES="$PACKAGES $TEST_PACKAGES"; fi
PACKAGES="$PACKAGES ${EPLB_EXTRA_PACKAGES:-}"

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
echo "eplb setup: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
