#!/usr/bin/env bash
# Pull + unpack benchmark (issue: layers to running containers): berth pull (unpacks by default) vs containerd 1.6
# (`ctr image pull` against a daemon the benchmark starts with its own root) vs a C-tool floor (curl | sha256sum |
# tar -xz, two layers at a time), alternating, same registry, same 1 GiB image. Prints a Markdown table.
# Usage: bench/unpack.sh [--rounds 3] [--size-mib 1024] [--layers 8]
#        (target/release/bench-unpack --help lists every option)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps
if ! command -v containerd >/dev/null 2>&1 || ! command -v ctr >/dev/null 2>&1; then
  echo "installing containerd (Debian, 1.6)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends containerd; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends containerd
  fi
fi
# the Debian package starts a system service on install; the benchmark starts its own daemon
if command -v systemctl >/dev/null 2>&1; then systemctl stop containerd >/dev/null 2>&1 || true; fi
command -v curl >/dev/null 2>&1 || { echo "curl is missing: apt-get install curl" >&2; exit 1; }
cargo build --release -p berth -p bench
. bench/scratch-fs.sh
scratch_fs
uptime
status=0
target/release/bench-unpack --berth target/release/berth "$@" || status=$?
uptime
exit "$status"
