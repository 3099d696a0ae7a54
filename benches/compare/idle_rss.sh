#!/usr/bin/env bash
# Idle memory of project-http with no deployments (issue #17's "idle RSS"):
# starts the server on an empty root with each I/O backend, waits for it to
# settle, and prints VmRSS, its anonymous and file-backed parts and the
# thread count from /proc/<pid>/status.
#
#   benches/compare/idle_rss.sh                       # target/release/project-http
#   PROJECT_HTTP_BIN=target/x86_64-unknown-linux-gnu/release/project-http benches/compare/idle_rss.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${PROJECT_HTTP_BIN:-target/release/project-http}
[ -x "$BIN" ] || { echo "idle_rss.sh: no binary at $BIN (cargo build --release, or set PROJECT_HTTP_BIN)" >&2; exit 1; }
WORK=$(mktemp -d)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
printf '%-8s %-8s %10s %10s %10s %8s\n' backend workers "VmRSS KiB" "anon KiB" "file KiB" threads
for backend in epoll auto; do
    for workers in 1 2; do
        rm -rf "$WORK/root"
        "$BIN" serve --root "$WORK/root" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
            --io-backend "$backend" --workers "$workers" >"$WORK/log" 2>&1 &
        PID=$!
        sleep 3
        status=/proc/$PID/status
        if [ ! -r "$status" ]; then
            echo "the server exited; its log:" >&2
            cat "$WORK/log" >&2
            exit 1
        fi
        field() { awk -v k="$1:" '$1 == k {print $2}' "$status"; }
        printf '%-8s %-8s %10s %10s %10s %8s\n' "$backend" "$workers" \
            "$(field VmRSS)" "$(field RssAnon)" "$(field RssFile)" "$(field Threads)"
        kill "$PID"
        wait "$PID" 2>/dev/null || true
        PID=
    done
done
