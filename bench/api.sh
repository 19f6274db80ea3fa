#!/usr/bin/env bash
# API server benchmark (issues: API server; etcd datastore): create throughput (1 and 32 clients) against the raw
# SQLite insert floor, single-pod get, list of 1000 pods as Table (as kubectl asks), and watch fan-out to 100
# watchers, all against a fresh `berth server` on loopback. With --etcd the create and watch runs are repeated on a
# real etcd cluster started on loopback (--etcd-members 1 or 3) and both datastores are printed side by side.
# Prints Markdown tables for docs/benchmarks.md.
# Usage: bench/api.sh [--pods 2000] [--concurrency 1,32] [--watchers 100] [--work-dir DIR] [--etcd [--etcd-members 3]]
#        (target/release/bench-api --help lists every option)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p berth -p bench
exec target/release/bench-api --berth target/release/berth "$@"
