#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS (default 20).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Builds the targets the way `cargo fuzz build` does (same sanitizer and
# coverage flags, release, the host target) but with plain cargo, so CI does
# not spend minutes installing cargo-fuzz; `cargo fuzz run <target>` works
# as well for local use (fuzz/README.md). RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take -Z sanitizer flags (no nightly is installed here). The
# checked-in corpus is copied to a scratch directory first, so runs never
# modify fuzz/corpus; a crash leaves its input in fuzz/artifacts/<target>/
# and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-20}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(path range accept_encoding conditional ingest fast_path)
HOST=$(rustc -vV | sed -n 's/^host: //p')
export RUSTC_BOOTSTRAP=1
# The flags cargo-fuzz 0.13 passes (ASan, inline 8-bit counters, cmp tracing).
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 -Zsanitizer=address \
-Cllvm-args=-sanitizer-coverage-stack-depth -Cdebug-assertions -Ccodegen-units=1"
bins=()
for target in "${TARGETS[@]}"; do bins+=(--bin "$target"); done
(cd fuzz && cargo build --release --quiet --target "$HOST" "${bins[@]}")
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
passed=0
for target in "${TARGETS[@]}"; do
    mkdir -p "$SCRATCH/$target" "fuzz/artifacts/$target"
    cp fuzz/corpus/"$target"/* "$SCRATCH/$target/"
    echo "fuzzing $target for ${SECONDS_EACH}s"
    "fuzz/target/$HOST/release/$target" -artifact_prefix="fuzz/artifacts/$target/" \
        -max_total_time="$SECONDS_EACH" -print_final_stats=1 "$SCRATCH/$target" 2>&1 |
        grep -E "^Done|stat::number_of_executed_units|ERROR|panicked|SUMMARY" || true
    # The fuzzer exits non-zero on a crash; pipefail and set -e stop here.
    passed=$((passed + 1))
done
echo "fuzz: $passed passed, 0 failed"
