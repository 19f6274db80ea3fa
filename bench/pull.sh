#!/usr/bin/env bash
# Pull benchmark (issue: foundation): berth pull vs skopeo copy, alternating, same registry, same image.
# Usage: bench/pull.sh [--sizes-mib 256,1024] [--rounds 3]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps
cargo build --release -p berth -p bench
exec target/release/bench-pull --berth target/release/berth "$@"
