#!/usr/bin/env bash
# Flip benchmark (issue: a flip of a 10 000-file deployment answers in < 50 ms
# including the index build; under load, flips cause no errors and no
# mixed bodies).
#
# Uploads two 10 000-file versions of a site, runs wrk (keep-alive, both a
# small in-memory file and a 200 KB file streamed from disk) while flipping
# between the versions N times through POST /services/site/activate, and
# reports the activate latencies and what wrk saw.
#
# usage: benches/admin/flips.sh [FLIPS]     (default 200)
set -euo pipefail
cd "$(dirname "$0")/../.."
FLIPS=${1:-200}
PORT=${PORT:-18490}
ADMIN=${ADMIN_PORT:-19490}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
cargo build --release --quiet
BIN=$PWD/target/release/project-http
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}" project-http-flips.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

python3 - "$WORK" <<'PY'
import io, os, random, sys, tarfile
work = sys.argv[1]
rng = random.Random(7)
for version in "AB":
    index = (f"<!doctype html><h1>version {version}</h1>" + version * 2000).encode()
    big = bytes([ord(version)]) * 200_000
    open(f"{work}/index.{version}", "wb").write(index)
    open(f"{work}/big.{version}", "wb").write(big)
    with tarfile.open(f"{work}/site-{version}.tar", "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name); info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("index.html", index)
        add("big.bin", big)
        for i in range(9_998):
            add(f"assets/d{i % 50}/f{i}.js", f"/* {version} {i} */".encode() + rng.randbytes(700))
PY

printf 'access_log = false\n' >"$WORK/bench.toml"
"$BIN" serve --config "$WORK/bench.toml" --root "$WORK/root" --listen 127.0.0.1:$PORT \
    --admin-listen 127.0.0.1:$ADMIN 2>"$WORK/server.err" >/dev/null &
PID=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$ADMIN/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
A=$(curl -fsS -T "$WORK/site-A.tar" -X POST "http://127.0.0.1:$ADMIN/services/site/deployments?id=va" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
B=$(curl -fsS -T "$WORK/site-B.tar" -X POST "http://127.0.0.1:$ADMIN/services/site/deployments?id=vb" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

cat >"$WORK/check.lua" <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread) end
local paths = {"/s/site/index.html", "/s/site/big.bin"}
local n = 0
function init(args)
  local function read(p) local f = assert(io.open(p, "rb")); local d = f:read("*a"); f:close(); return d end
  expected = {}
  for _, p in ipairs({args[1] .. "/index.A", args[1] .. "/index.B", args[1] .. "/big.A", args[1] .. "/big.B"}) do
    expected[read(p)] = true
  end
  ok, bad, mixed = 0, 0, 0
end
function request()
  n = n + 1
  return wrk.format("GET", paths[(n % 2) + 1])
end
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1
  elseif not expected[body] then mixed = mixed + 1
  else ok = ok + 1 end
end
function done(summary, latency, requests)
  local o, b, m = 0, 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad"); m = m + t:get("mixed") end
  io.write(string.format("wrk checked %d bodies: %d whole single-version 200s, %d non-200, %d mixed or unknown\n", o + b + m, o, b, m))
end
LUA

flip() { # $1 = phase label, $2 = id
    curl -fsS -o /dev/null -w "$1 %{time_total}\n" -X POST -d "{\"id\":\"$2\"}" \
        "http://127.0.0.1:$ADMIN/services/site/activate" >>"$WORK/flips"
}
: >"$WORK/flips"
# First without load, then under wrk.
for i in $(seq 20); do
    if [ $((i % 2)) -eq 1 ]; then flip idle "$A"; else flip idle "$B"; fi
    sleep 0.02
done
DURATION=$(( FLIPS / 20 + 5 ))
wrk -t1 -c16 -d${DURATION}s -s "$WORK/check.lua" "http://127.0.0.1:$PORT" -- "$WORK" >"$WORK/wrk.out" 2>&1 &
WRK=$!
sleep 1
for i in $(seq "$FLIPS"); do
    if [ $((i % 2)) -eq 1 ]; then flip load "$A"; else flip load "$B"; fi
    sleep 0.02
done
wait $WRK
python3 - "$WORK/flips" "$WORK/server.err" <<'PY'
import re, statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
events = re.findall(r'event="deployment.activated" data=\{[^}]*"elapsedMs":(\d+),"indexMs":(\d+)', open(sys.argv[2]).read())
events = [(int(e), int(i)) for e, i in events][-len(rows):]
def pct(values, p):
    values = sorted(values)
    return values[max(int(len(values) * p) - 1, 0)]
for phase in ("idle", "load"):
    t = [float(r[1]) * 1000 for r in rows if r[0] == phase]
    ev = [e for r, e in zip(rows, events) if r[0] == phase]
    print(f"{phase}: {len(t)} flips of a 10 000-file deployment; activate answered in "
          f"p50 {statistics.median(t):.1f} ms, p99 {pct(t, .99):.1f} ms, max {max(t):.1f} ms (client side)")
    if ev:
        print(f"{phase}:   server side p50 {statistics.median(e for e, _ in ev)} ms, of which index build p50 "
              f"{statistics.median(i for _, i in ev)} ms (max {max(i for _, i in ev)} ms)")
PY
grep -E "Requests/sec|Non-2xx|Socket errors|wrk checked" "$WORK/wrk.out"
