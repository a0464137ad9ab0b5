#!/bin/sh
# Puts the upstream sources of GoogleTest and Google Benchmark, from Debian's source packages,
# into .device/src/{googletest,benchmark} (git-ignored), for tests/device/gpu_check.sh on a GPU
# machine that has neither and no network. Run it here, then carry `.device` to that machine.
#
# Uses a private apt configuration (the system's Debian mirrors, as deb-src) in a temporary
# folder: the system's apt set-up is not changed.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
dest="$root/.device/src"
work=$(mktemp -d)
chmod 755 "$work"  # apt downloads as user _apt
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/parts" "$work/lists/partial" "$work/unpack" "$dest"
: > "$work/sources.list"
if [ -f /etc/apt/sources.list ]; then
  sed -n 's/^deb \(.*\)$/deb-src \1/p' /etc/apt/sources.list > "$work/sources.list"
fi
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && sed 's/^Types:.*/Types: deb-src/' "$f" > "$work/parts/$(basename "$f")"
done
apt_options="-o Dir::Etc::SourceList=$work/sources.list -o Dir::Etc::SourceParts=$work/parts -o Dir::State::Lists=$work/lists"
echo "fetch_sources: reading Debian's source index" >&2
# shellcheck disable=SC2086
apt-get $apt_options update -qq
for package in googletest benchmark; do
  echo "fetch_sources: $package" >&2
  # shellcheck disable=SC2086
  (cd "$work" && apt-get $apt_options source --download-only -qq "$package" >/dev/null 2>&1)
  tar xzf "$work/${package}_"*.orig.tar.gz -C "$work/unpack"
  rm -rf "${dest:?}/$package"
  mv "$work/unpack/"* "$dest/$package"
done
du -sh "$dest"/* >&2
