#!/usr/bin/env bash
# Rollout benchmark (issue: Deployments on several nodes): time from `kubectl apply -f` of a 20-replica
# Deployment (imagePullSecrets, image in a local TLS + htpasswd registry) to all pods Running, with one node (the
# embedded agent of `berth server`) and three (`berth server --no-agent` plus three `berth agent`s), the realistic
# 1 GiB image uncached then cached, against one plain `berth pull` of the same image in the same run; counts the
# registry's blob downloads. Runs as root (runc). Prints a Markdown table for docs/benchmarks.md.
# Usage: bench/apply.sh [--nodes 1,3] [--replicas 20] [--size-mib 1024] [--layers 8]
#        (target/release/bench-apply --help lists every option)
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
target/release/bench-apply --berth target/release/berth "$@" || status=$?
uptime
exit "$status"
