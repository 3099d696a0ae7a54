#!/usr/bin/env bash
# Instructions per request under callgrind (benches/compare/callgrind.py):
# installs valgrind, nginx, lighttpd and h2o from Debian if missing, builds a
# release project-http, and runs callgrind.py with the arguments given.
set -euo pipefail
cd "$(dirname "$0")/../.."
missing=()
for tool in valgrind nginx lighttpd h2o curl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# PROJECT_HTTP_BIN=<binary>: measure that build instead (no cargo build).
[ -n "${PROJECT_HTTP_BIN:-}" ] || cargo build --release --locked --quiet
exec python3 benches/compare/callgrind.py "$@"
