#!/usr/bin/env python3
"""Side-by-side benchmark: project-http against nginx, lighttpd and h2o.

Each server gets ONE worker pinned to CPU 0 (taskset); wrk runs pinned to
CPU 1 with keep-alive. Cases run in interleaved repetitions (A B C D A B C D
...) so drift of the machine hits every server alike; medians are reported.
Every body is checked against the fixture's SHA-256 before any timing.

Server CPU per request = (utime + stime of all the server's processes, from
/proc) / requests: on 2 cores wrk saturates around 180-200k req/s, so for
small files this is the figure that separates servers.

usage: benches/compare/run.sh [--reps N] [--seconds S] [--cases a,b] [--servers a,b]
"""
import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# PROJECT_HTTP_BIN: measure another build (e.g. the image's static binary,
# target/x86_64-unknown-linux-gnu/release/project-http).
BIN = os.environ.get("PROJECT_HTTP_BIN") or os.path.join(REPO, "target", "release", "project-http")
PORTS = {"project-http": 18601, "project-http-uring": 18605, "nginx": 18602, "lighttpd": 18603,
         "h2o": 18604, "project-http log=text": 18606, "project-http log=json": 18607,
         "nginx log=buffer64k": 18608}
# project-http runs as several variants: its epoll and io_uring backends
# (access log off, as every peer), and the epoll backend with its access log
# on (text, JSON; written to a file like the peers' logs). name -> (backend,
# admin port, access log format or None).
VARIANTS = {"project-http": ("epoll", 18611, None), "project-http-uring": ("uring", 18612, None),
            "project-http log=text": ("epoll", 18613, "text"),
            "project-http log=json": ("epoll", 18614, "json")}
# By default the access-log variants are left out (--servers names them).
DEFAULT_SERVERS = ["project-http", "project-http-uring", "nginx", "lighttpd", "h2o"]
TICKS = os.sysconf("SC_CLK_TCK")

CASES = {
    # name: (path or None for the mix, connections)
    "index.html (2 KB)": ("/s/bench/index.html", 64),
    "1 000-file mix": (None, 64),
    # The "0 errors at 1 000 concurrent keep-alive connections".
    "index.html 1 000 conns": ("/s/bench/index.html", 1000),
    "100 KB": ("/s/bench/assets/app.js", 32),
    "1 MiB": ("/s/bench/media/1mib.bin", 16),
    "10 MiB": ("/s/bench/media/10mib.bin", 8),
    # Above the 64 MiB mapping limit: read per response (blocking pool or io_uring).
    "100 MiB": ("/s/bench/media/100mib.bin", 2),
}


def fixture(root):
    """Deterministic site: 2 KB index.html, 100 KB js, 1, 10 and 100 MiB binaries,
    1 000 small files (0.5-8 KB) in nested directories."""
    rng = random.Random(1234)
    files = {"index.html": (b"<!doctype html><title>bench</title>" + b"<p>project-http bench</p>" * 80)[:2048]}
    files["assets/app.js"] = bytes(rng.getrandbits(8) for _ in range(100 * 1024))
    files["media/1mib.bin"] = rng.randbytes(1 << 20)
    files["media/10mib.bin"] = rng.randbytes(10 << 20)
    files["media/100mib.bin"] = rng.randbytes(100 << 20)
    for i in range(1000):
        files[f"small/d{i % 10}/e{i % 7}/f{i}.css"] = rng.randbytes(rng.randint(512, 8192))
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"nothing listening on {port}")


def start_servers(work, docroot, only):
    """Starts each server pinned to CPU 0; returns name -> Popen."""
    procs = {}
    logs = open(os.path.join(work, "servers.log"), "w")
    conf = os.path.join(work, "conf")
    os.makedirs(conf, exist_ok=True)
    for name, (backend, admin_port, log) in VARIANTS.items():
        if name not in only:
            continue
        slug = name.replace(" ", "-").replace("=", "-")
        access = f"access_log = true\nlog_format = \"{log}\"\n" if log else "access_log = false\n"
        with open(f"{conf}/{slug}.toml", "w") as f:
            f.write(access + "log_level = \"warn\"\nworkers = 1\nwatch = \"off\"\n"
                    f"io_backend = \"{backend}\"\n")
        out = open(os.path.join(work, f"{slug}.access.log"), "w") if log else logs
        procs[name] = subprocess.Popen(
            ["taskset", "-c", "0", BIN, "serve", "--config", f"{conf}/{slug}.toml",
             "--root", f"{work}/{slug}-root", "--listen", f"127.0.0.1:{PORTS[name]}",
             "--admin-listen", f"127.0.0.1:{admin_port}"], stdout=out, stderr=logs)
    for name in ("nginx", "nginx log=buffer64k"):
        if name not in only:
            continue
        slug = name.replace(" ", "-").replace("=", "-")
        access = (f"access_log {work}/{slug}.access.log combined buffer=64k flush=1s;"
                  if "log=" in name else "access_log off;")
        with open(f"{conf}/{slug}.conf", "w") as f:
            f.write(f"""
worker_processes 1; daemon off; pid {work}/{slug}.pid; error_log {work}/{slug}-error.log warn;
events {{ worker_connections 4096; }}
http {{
  {access} sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 10000000; keepalive_timeout 120s;
  open_file_cache max=10000 inactive=60s; open_file_cache_valid 60s;
  types {{ text/html html; text/css css; application/javascript js; }}
  default_type application/octet-stream;
  client_body_temp_path {work}/nginx-tmp; proxy_temp_path {work}/nginx-tmp;
  fastcgi_temp_path {work}/nginx-tmp; uwsgi_temp_path {work}/nginx-tmp; scgi_temp_path {work}/nginx-tmp;
  server {{ listen 127.0.0.1:{PORTS[name]}; root {docroot}; etag on; }}
}}
""")
        os.makedirs(f"{work}/nginx-tmp", exist_ok=True)
        procs[name] = subprocess.Popen(["taskset", "-c", "0", "nginx", "-c", f"{conf}/{slug}.conf"],
                                       stdout=logs, stderr=logs)
    if "lighttpd" in only:
        with open(f"{conf}/lighttpd.conf", "w") as f:
            f.write(f"""
server.document-root = "{docroot}"
server.port = {PORTS['lighttpd']}
server.bind = "127.0.0.1"
server.max-keep-alive-requests = 10000000
server.max-keep-alive-idle = 120
server.max-connections = 4096
server.max-fds = 8192
server.errorlog = "{work}/lighttpd-error.log"
mimetype.assign = (".html" => "text/html", ".css" => "text/css", ".js" => "application/javascript", "" => "application/octet-stream")
""")
        procs["lighttpd"] = subprocess.Popen(["taskset", "-c", "0", "lighttpd", "-D", "-f", f"{conf}/lighttpd.conf"],
                                             stdout=logs, stderr=logs)
    if "h2o" in only:
        with open(f"{conf}/h2o.conf", "w") as f:
            f.write(f"""
num-threads: 1
listen:
  host: 127.0.0.1
  port: {PORTS['h2o']}
access-log: /dev/null
error-log: {work}/h2o-error.log
http1-request-timeout: 120
hosts:
  default:
    paths:
      /:
        file.dir: {docroot}
""")
        procs["h2o"] = subprocess.Popen(["taskset", "-c", "0", "h2o", "-c", f"{conf}/h2o.conf"],
                                        stdout=logs, stderr=logs)
    for name in procs:
        wait_port(PORTS[name])
    return procs


def pids_of(proc):
    """The server process and its children (nginx's worker, h2o's)."""
    pids = [proc.pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
    except Exception:
        pass
    return pids


def cpu_ticks(proc):
    total = 0
    for pid in pids_of(proc):
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def rss_kib(proc):
    total = 0
    for pid in pids_of(proc):
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def verify(name, port, digests):
    for rel, digest in digests.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/s/bench/{rel}", timeout=10) as r:
            got = hashlib.sha256(r.read()).hexdigest()
        if got != digest:
            raise SystemExit(f"{name} served wrong bytes for {rel}")


def parse_wrk(text):
    def number(pattern, scale=None):
        m = re.search(pattern, text)
        if not m:
            return 0.0
        value = float(m.group(1))
        unit = m.group(2) if m.lastindex and m.lastindex >= 2 else ""
        return value * (scale or {}).get(unit, 1)
    time_units = {"us": 1e-3, "ms": 1, "s": 1000, "m": 60000}
    size_units = {"B": 1 / 1e6, "KB": 1024 / 1e6, "MB": 1024 ** 2 / 1e6, "GB": 1024 ** 3 / 1e6}
    return {
        "requests": int(number(r"(\d+) requests in")),
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "mbps": number(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", size_units),
        "p99_ms": number(r"99%\s+([\d.]+)(us|ms|s|m)\b", time_units),
        "errors": int(number(r"Non-2xx or 3xx responses: (\d+)")) + sum(
            int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", text)),
    }


def run_case(work, name, port, path, connections, seconds):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if path is None:
        cmd += ["-s", os.path.join(work, "mix.lua")]
        url = f"http://127.0.0.1:{port}"
    else:
        url = f"http://127.0.0.1:{port}{path}"
    out = subprocess.run(cmd + [url], capture_output=True, text=True).stdout
    return parse_wrk(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS),
                        help="of: " + ", ".join(PORTS))
    args = parser.parse_args()
    servers = [s for s in args.servers.split(",") if s]
    cases = [c for c in args.cases.split(",") if c]
    work = tempfile.mkdtemp(prefix="project-http-compare.")
    os.chmod(work, 0o755)  # nginx and h2o workers drop to an unprivileged user
    procs = {}
    try:
        docroot = os.path.join(work, "docroot")
        site = os.path.join(docroot, "s", "bench")
        digests = fixture(site)
        with open(os.path.join(work, "mix.lua"), "w") as f:
            paths = [f"/s/bench/{rel}" for rel in sorted(digests) if rel.startswith("small/")]
            f.write("local paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n")
            f.write("local i = 0\nfunction request()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n")
        procs = start_servers(work, docroot, servers)
        idle_rss = {name: rss_kib(p) for name, p in procs.items()}
        tarball = os.path.join(work, "site.tar")
        subprocess.run(["tar", "-C", site, "-cf", tarball, "."], check=True)
        for name, (_, admin_port, _) in VARIANTS.items():
            if name in procs:
                subprocess.run(["curl", "-fsS", "-o", "/dev/null", "-T", tarball, "-X", "POST",
                                f"http://127.0.0.1:{admin_port}/services/bench/deployments"], check=True)
        for name, p in procs.items():
            verify(name, PORTS[name], digests)
        results = {(c, s): [] for c in cases for s in procs}
        for rep in range(args.reps):
            for case in cases:
                path, connections = CASES[case]
                for name, proc in procs.items():
                    before = cpu_ticks(proc)
                    r = run_case(work, name, PORTS[name], path, connections, args.seconds)
                    r["cpu_us"] = (cpu_ticks(proc) - before) / TICKS * 1e6 / max(r["requests"], 1)
                    r["rss_kib"] = rss_kib(proc)
                    results[(case, name)].append(r)
                    print(f"rep {rep + 1} {case:<18} {name:<13} {r['rps']:>10.0f} req/s {r['mbps']:>9.1f} MB/s "
                          f"p99 {r['p99_ms']:>7.2f} ms {r['cpu_us']:>6.2f} µs CPU/req errors {r['errors']}",
                          flush=True)
        report(results, cases, list(procs), idle_rss, args)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


def report(results, cases, servers, idle_rss, args):
    med = lambda case, s, k: statistics.median(r[k] for r in results[(case, s)])
    print(f"\nMedians of {args.reps} interleaved repetitions, {args.seconds} s each; "
          "one server worker pinned to CPU 0, wrk -t1 pinned to CPU 1, keep-alive.\n")
    print("| case | server | req/s | MB/s | p99 ms | server CPU µs/req | RSS MiB | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for case in cases:
        for s in servers:
            errors = sum(r["errors"] for r in results[(case, s)])
            print(f"| {case} | {s} | {med(case, s, 'rps'):,.0f} | {med(case, s, 'mbps'):,.0f} | "
                  f"{med(case, s, 'p99_ms'):.2f} | {med(case, s, 'cpu_us'):.2f} | "
                  f"{med(case, s, 'rss_kib') / 1024:.1f} | {errors} |")
    ours = [s for s in servers if s in VARIANTS]
    peers = [s for s in servers if s not in VARIANTS]
    if ours and peers:
        print("\nproject-http relative to the best peer of each case "
              "(req/s and MB/s: higher is better; CPU/req and p99: lower is better):\n")
        print("| case | variant | req/s | MB/s | CPU/req | p99 | best peer by req/s |")
        print("|---|---|---|---|---|---|---|")
        for case in cases:
            best = max(peers, key=lambda s: med(case, s, "rps"))
            best_cpu = min(med(case, s, "cpu_us") for s in peers)
            best_p99 = min(med(case, s, "p99_ms") for s in peers)
            ratio = lambda a, b: f"{a / b:.2f}×" if b else "-"
            for name in ours:
                ph = lambda k: med(case, name, k)
                print(f"| {case} | {name} | {ratio(ph('rps'), med(case, best, 'rps'))} | "
                      f"{ratio(ph('mbps'), med(case, best, 'mbps'))} | "
                      f"{ratio(ph('cpu_us'), best_cpu)} | {ratio(ph('p99_ms'), best_p99)} | {best} |")
    print("\nidle RSS before the run (MiB): " + ", ".join(f"{s} {idle_rss[s] / 1024:.1f}" for s in servers))


if __name__ == "__main__":
    main()
