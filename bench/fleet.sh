#!/usr/bin/env bash
# Fleet pull benchmark (issue: beyond one machine, peer-to-peer layers): N `berth agent`s on this machine (default
# 10) run one replica each of a Deployment of the realistic 1 GiB image from the local TLS registry, with peer
# sharing and (with --without-peers) without; prints registry egress as a multiple of the image and the fleet's
# wall time against one node's pull. Needs about 20 GB of free disk.
# Usage: bench/fleet.sh [--nodes 10] [--size-mib 1024] [--without-peers]
#        (target/release/bench-fleet --help lists every option)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps
command -v runc >/dev/null 2>&1 || { echo "runc is missing: apt-get install runc" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "/bin/busybox is missing: apt-get install busybox-static" >&2; exit 1; }
cargo build --release -p berth -p bench
. bench/scratch-fs.sh
scratch_fs
uptime
status=0
target/release/bench-fleet --berth target/release/berth "$@" || status=$?
uptime
exit "$status"
