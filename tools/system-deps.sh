#!/usr/bin/env bash
# Install the Debian packages listed in tools/debian-packages.txt, when we can (root + apt-get).
# Never fails the build by itself: a missing tool makes its tests skip (or fail under CI=true).
set -u
cd "$(dirname "$0")/.."
mapfile -t pkgs < <(grep -v '^\s*#' tools/debian-packages.txt | grep -v '^\s*$')
[ ${#pkgs[@]} -eq 0 ] && exit 0
missing=()
for p in "${pkgs[@]}"; do
  # A command of the package's name counts too: NodeSource's nodejs package brings npm.
  dpkg -s "$p" >/dev/null 2>&1 || command -v "$p" >/dev/null || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: not root on Debian; tests needing ${missing[*]} will skip" >&2
  exit 0
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || echo "system-deps: apt-get install failed for ${missing[*]}" >&2
exit 0
