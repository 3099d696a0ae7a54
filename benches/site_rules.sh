#!/usr/bin/env bash
# Instruction counts of a plain file request with and without 2 000 + 100
# redirect rules (see benches/site_rules.rs). Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
cargo bench --bench site_rules --no-run --quiet 2>/dev/null
bin=$(ls -t target/release/deps/site_rules-* | grep -v '\.d$' | head -1)
out=$(mktemp -d)
count() { # kind n -> total instructions
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.$1.$2" "$bin" "$1" "$2" >/dev/null 2>"$out/log.$1.$2"
    grep -oP 'Collected : \K[0-9]+' "$out/log.$1.$2"
}
declare -A per
for kind in none rules forced; do
    base=$(count "$kind" 0)
    full=$(count "$kind" "$N")
    per[$kind]=$(( (full - base) / N ))
    echo "$kind: $(( full - base )) instructions for $N requests = ${per[$kind]} per request"
done
for kind in rules forced; do
    awk -v a="${per[$kind]}" -v b="${per[none]}" -v k="$kind" \
        'BEGIN { printf "%s vs none: %+.2f %%\n", k, (a - b) * 100 / b }'
done
rm -rf "$out"
