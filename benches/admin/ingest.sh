#!/usr/bin/env bash
# Upload benchmark (issue: streaming ingest keeps memory flat).
#
# Builds a deterministic 1 GiB tarball of 10 000 files, extracts it with
# `tar -x` on the same disk as a baseline, then uploads it to a release build
# of project-http through the admin API and reports the server's peak RSS
# (VmHWM) and the ingest speed relative to tar.
#
# usage: benches/admin/ingest.sh [FILES] [BYTES]      (defaults 10000 1073741824)
# env:   BENCH_DIR (default /var/tmp) holds the work directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
FILES=${1:-10000}
BYTES=${2:-1073741824}
PORT=${PORT:-18480}
ADMIN=${ADMIN_PORT:-19480}
cargo build --release --quiet
BIN=$PWD/target/release/project-http
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}" project-http-bench.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
now() { date +%s.%N; }

echo "fixture: $FILES files, $BYTES bytes in $WORK"
python3 benches/admin/make_site.py "$WORK/src" "$FILES" "$BYTES"
tar -C "$WORK/src" -cf "$WORK/site.tar" .
rm -rf "$WORK/src"
SIZE=$(stat -c %s "$WORK/site.tar")
sync

# The tarball is 1 GiB of files plus tar headers: raise the 1 GiB default limit.
printf 'max_upload_bytes = 2147483648\naccess_log = false\n' >"$WORK/bench.toml"
"$BIN" serve --config "$WORK/bench.toml" --root "$WORK/root" --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN \
    2>"$WORK/server.err" >/dev/null &
PID=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$ADMIN/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
RSS_IDLE=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)

# Interleaved repetitions (tar, upload, tar, upload, ...) so drift of the
# disk or the machine hits both alike; medians are reported.
: >"$WORK/times"
for rep in $(seq "${REPS:-3}"); do
    mkdir "$WORK/x"
    t0=$(now); tar -xf "$WORK/site.tar" -C "$WORK/x"; t1=$(now); sync; t2=$(now)
    rm -rf "$WORK/x"; sync
    t3=$(now)
    curl -fsS -X POST -T "$WORK/site.tar" -H 'Content-Type: application/x-tar' \
        "http://127.0.0.1:$ADMIN/services/bench$rep/deployments" >"$WORK/answer.json"
    t4=$(now)
    curl -fsS "http://127.0.0.1:$PORT/s/bench$rep/" >/dev/null
    echo "$t0 $t1 $t2 $t3 $t4" >>"$WORK/times"
    rm -rf "$WORK/root/bench$rep"; sync
done
HWM=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
grep -o 'event="deployment[.a-z]*" data={[^}]*}' "$WORK/server.err" | sed 's/^/server: /' || true

python3 - "$SIZE" "$RSS_IDLE" "$HWM" "$WORK/answer.json" "$WORK/times" <<'PY'
import json, statistics, sys
size, idle, hwm = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
answer = json.load(open(sys.argv[4]))
rows = [list(map(float, line.split())) for line in open(sys.argv[5])]
tar_x = statistics.median(r[1] - r[0] for r in rows)
tar_sync = statistics.median(r[2] - r[0] for r in rows)
upload = statistics.median(r[4] - r[3] for r in rows)
mib = size / 2**20
print(f"tarball              {mib:.0f} MiB, {answer['files']} files, {len(rows)} interleaved repetitions (medians)")
print(f"tar -x               {tar_x:.2f} s  ({mib / tar_x:.0f} MiB/s)")
print(f"tar -x + sync        {tar_sync:.2f} s  ({mib / tar_sync:.0f} MiB/s)")
print(f"project-http upload  {upload:.2f} s  ({mib / upload:.0f} MiB/s; validated, hashed, synced, indexed, flipped)")
print(f"speed vs tar -x        {tar_x / upload * 100:.0f} %")
print(f"speed vs tar -x + sync {tar_sync / upload * 100:.0f} %")
print(f"server RSS idle      {idle / 1024:.1f} MiB")
print(f"server peak (VmHWM)  {hwm / 1024:.1f} MiB over all uploads")
PY
