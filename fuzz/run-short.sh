#!/usr/bin/env bash
# Runs every cargo-fuzz target of this project for N seconds each (default 30) and exits non-zero if any target
# crashes (a panic or a failed assertion), printing the crashing input's path under artifacts/.
#
#   fuzz/run-short.sh [SECONDS] [TARGET...]
#
# Works on the stable toolchain through RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly flags). The sanitizer defaults
# to none (the fuzzed crates have no unsafe code, and ASan triples build and run time); set FUZZ_SANITIZER=address
# to enable it. Requires cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail

cd "$(dirname "$0")"
seconds="${1:-30}"
shift || true
case "$seconds" in
  ''|*[!0-9]*) echo "run-short.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "run-short.sh: cargo-fuzz is not installed; run: cargo install cargo-fuzz" >&2
  exit 2
fi
export RUSTC_BOOTSTRAP=1
sanitizer="${FUZZ_SANITIZER:-none}"

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

failed=()
for t in "${targets[@]}"; do
  echo "== fuzzing $t for ${seconds}s (sanitizer: $sanitizer)"
  mkdir -p "corpus/$t"
  if ! cargo fuzz run --sanitizer "$sanitizer" "$t" "corpus/$t" -- -max_total_time="$seconds" -timeout=10 \
      -print_final_stats=1; then
    echo "== $t FAILED; reproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $sanitizer $t artifacts/$t/<crash file>" >&2
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz targets with crashes: ${failed[*]}" >&2
  exit 1
fi
echo "all fuzz targets ran ${seconds}s without a crash: ${targets[*]}"
