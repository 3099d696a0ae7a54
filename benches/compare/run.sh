#!/usr/bin/env bash
# One command for the side-by-side benchmark (benches/compare/README.md):
# installs nginx, lighttpd, h2o and wrk from Debian if missing, builds a
# release project-http, and runs benches/compare/run.py with the arguments given.
set -euo pipefail
cd "$(dirname "$0")/../.."
missing=()
for tool in nginx lighttpd h2o wrk taskset curl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    pkgs=()
    for tool in "${missing[@]}"; do
        case "$tool" in taskset) pkgs+=(util-linux) ;; *) pkgs+=("$tool") ;; esac
    done
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
# PROJECT_HTTP_BIN=<binary>: measure that build instead (no cargo build).
[ -n "${PROJECT_HTTP_BIN:-}" ] || cargo build --release --locked --quiet
# The 1 000-connection case needs more descriptors than the usual 1 024.
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true
exec python3 benches/compare/run.py "$@"
