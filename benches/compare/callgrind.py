#!/usr/bin/env python3
"""User-space instructions per request, under callgrind: a measure that does
not swing with the machine's load (docs/BENCHMARKS.md, "Instructions per
request").

For each server and case: start the server under `valgrind --tool=callgrind`
with one worker, send N keep-alive requests on ONE connection from this
script, stop the server (SIGTERM), read callgrind's `summary:` total of
instructions (Ir, all threads). Do it for N = SMALL and N = LARGE and divide
the difference by LARGE - SMALL, so start-up and shutdown cancel.

Cases:
  index.html   GET of a 2 KB file, 200 (held in memory by project-http)
  304          GET of index.html with If-None-Match: <its ETag>, 304
  mix          GETs rotating through the 1 000-file fixture (0.5-8 KB each)

Servers: project-http (access log off, text, JSON, text sampled 1 in 10), nginx (access log off, and
`buffer=64k flush=1s`), lighttpd (off), h2o (off) when installed. lighttpd and
nginx get keep-alive request limits raised so they never close the
connection; nginx runs with `master_process off` (one process to count).

usage: benches/compare/callgrind.sh [--small 500] [--large 4500] [--servers a,b] [--cases a,b]
                                   [--keep DIR]

--keep DIR keeps callgrind's output of every run in DIR
(callgrind.<case>.<server>.n<N>.out*), for `callgrind_annotate` (a binary
with symbols: PROJECT_HTTP_BIN=<unstripped build>); `per_function.py` in
this directory turns the two runs of a case into instructions per request
per function.
"""
import argparse
import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as harness  # noqa: E402  (the wrk harness: fixture, paths)

BIN = harness.BIN
PORT = 18701
ADMIN = 18702


def project_http(log, sample=1):
    def start(work, docroot, out):
        conf = os.path.join(work, f"ph-{log}-{sample}.toml")
        with open(conf, "w") as f:
            f.write(f"access_log = {'false' if log == 'off' else 'true'}\nlog_level = \"warn\"\n"
                    f"access_log_sample = {sample}\n"
                    "workers = 1\nwatch = \"off\"\nio_backend = \"epoll\"\n")
        root = os.path.join(work, "ph-root")
        fmt = "json" if log == "json" else "text"
        return [BIN, "serve", "--config", conf, "--root", root, "--log-format", fmt,
                "--listen", f"127.0.0.1:{PORT}", "--admin-listen", f"127.0.0.1:{ADMIN}"], "/s/bench/"
    return start


def nginx(log):
    def start(work, docroot, out):
        conf = os.path.join(work, f"nginx-{log}.conf")
        access = "access_log off;" if log == "off" else \
            f"access_log {work}/nginx-access.log combined buffer=64k flush=1s;"
        os.makedirs(f"{work}/nginx-tmp", exist_ok=True)
        with open(conf, "w") as f:
            f.write(f"""
worker_processes 1; daemon off; master_process off; pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  {access} sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 10000000; keepalive_timeout 600s;
  open_file_cache max=10000 inactive=600s; open_file_cache_valid 600s;
  types {{ text/html html; text/css css; application/javascript js; }}
  default_type application/octet-stream;
  client_body_temp_path {work}/nginx-tmp; proxy_temp_path {work}/nginx-tmp;
  fastcgi_temp_path {work}/nginx-tmp; uwsgi_temp_path {work}/nginx-tmp; scgi_temp_path {work}/nginx-tmp;
  server {{ listen 127.0.0.1:{PORT}; root {docroot}; etag on; }}
}}
""")
        return ["nginx", "-c", conf], "/s/bench/"
    return start


def lighttpd(work, docroot, out):
    conf = os.path.join(work, "lighttpd.conf")
    with open(conf, "w") as f:
        f.write(f"""
server.document-root = "{docroot}"
server.port = {PORT}
server.bind = "127.0.0.1"
server.max-keep-alive-requests = 10000000
server.max-keep-alive-idle = 600
server.errorlog = "{work}/lighttpd-error.log"
mimetype.assign = (".html" => "text/html", ".css" => "text/css", ".js" => "application/javascript", "" => "application/octet-stream")
""")
    return ["lighttpd", "-D", "-f", conf], "/s/bench/"


def h2o(work, docroot, out):
    conf = os.path.join(work, "h2o.conf")
    with open(conf, "w") as f:
        f.write(f"""
num-threads: 1
listen:
  host: 127.0.0.1
  port: {PORT}
access-log: /dev/null
error-log: {work}/h2o-error.log
http1-request-timeout: 600
hosts:
  default:
    paths:
      /:
        file.dir: {docroot}
""")
    return ["h2o", "-c", conf], "/s/bench/"


SERVERS = {
    "project-http": project_http("off"),
    "project-http log=text": project_http("text"),
    "project-http log=json": project_http("json"),
    "project-http log=text sample=10": project_http("text", 10),
    "nginx": nginx("off"),
    "nginx log=buffer64k": nginx("buffered"),
    "lighttpd": lighttpd,
}
# Not in the default list: under valgrind h2o's forked server is not
# followed, so there is no count (pass --servers h2o to try).
OPTIONAL = {"h2o": h2o}
CASES = ["index.html", "304", "mix"]


def wait_port(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listening on {port}")


def read_response(sock, buf):
    """Reads one response; returns (status, headers dict, remaining buffer)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("connection closed by the server")
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("connection closed mid-body")
        buf += chunk
    return status, headers, buf[length:]


def drive(port, requests, expect):
    """Sends each (path, extra headers) request in turn on one connection."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    for path, extra in requests:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{extra}\r\n".encode())
        status, _, buf = read_response(sock, buf)
        if status != expect:
            raise SystemExit(f"GET {path}: {status}, expected {expect}")
    sock.close()


def etag_of(port, path):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
    _, headers, _ = read_response(sock, b"")
    sock.close()
    return headers["etag"]


def measure(work, docroot, site_tar, mix, server, case, n, keep=None):
    """Instructions of one whole run of `n` requests (start-up included);
    the output files are copied to `keep` when given."""
    out = os.path.join(work, "callgrind.out")
    for stale in glob.glob(out + "*"):
        os.remove(stale)
    argv, prefix = {**SERVERS, **OPTIONAL}[server](work, docroot, out)
    if server.startswith("project-http"):
        # Deploy before measuring: the deployment is on the volume and is
        # loaded at start-up, identical for both N.
        root = os.path.join(work, "ph-root")
        if not os.path.isdir(os.path.join(root, "bench")):
            deploy(argv, site_tar)
    log = open(os.path.join(work, "server.log"), "ab")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + argv,
                            stdout=log, stderr=log)
    try:
        wait_port(PORT)
        index = prefix + "index.html"
        if case == "index.html":
            requests, expect = [(index, "")] * n, 200
        elif case == "304":
            tag = etag_of(PORT, index)
            requests, expect = [(index, f"If-None-Match: {tag}\r\n")] * n, 304
        else:
            requests, expect = [(prefix + mix[i % len(mix)], "") for i in range(n)], 200
        if case != "304":
            etag_of(PORT, index)  # the same one extra request in every case
        drive(PORT, requests, expect)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    total = 0
    for path in glob.glob(out + "*"):
        with open(path) as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    total += int(line.split()[1])
                    break
    if not total:
        raise SystemExit(f"{server}: no callgrind totals in {out}")
    if keep:
        os.makedirs(keep, exist_ok=True)
        for path in glob.glob(out + "*"):
            suffix = os.path.basename(path)[len("callgrind.out"):]
            name = f"callgrind.{case}.{server.replace(' ', '_').replace('=', '-')}.n{n}.out{suffix}"
            shutil.copy(path, os.path.join(keep, name))
    return total


def deploy(argv, site_tar):
    """Starts project-http once without valgrind and uploads the fixture."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(ADMIN)
        subprocess.run(["curl", "-fsS", "-o", "/dev/null", "-T", site_tar, "-X", "POST",
                        f"http://127.0.0.1:{ADMIN}/services/bench/deployments"], check=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=4500)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--keep", help="keep the callgrind outputs in this directory")
    args = parser.parse_args()
    servers = [s for s in args.servers.split(",") if s]
    for s in servers:
        tool = "project-http" if s.startswith("project-http") else s.split()[0]
        if tool != "project-http" and not shutil.which(tool):
            print(f"skipping {s}: {tool} is not installed", file=sys.stderr)
            servers.remove(s)
    cases = [c for c in args.cases.split(",") if c]
    work = tempfile.mkdtemp(prefix="project-http-callgrind.")
    os.chmod(work, 0o755)
    try:
        docroot = os.path.join(work, "docroot")
        site = os.path.join(docroot, "s", "bench")
        digests = harness.fixture(site)
        # The 100 MiB file is not used here; keep the upload small.
        for big in ("media/100mib.bin", "media/10mib.bin"):
            os.remove(os.path.join(site, big))
        mix = sorted(rel for rel in digests if rel.startswith("small/"))
        random.Random(7).shuffle(mix)
        site_tar = os.path.join(work, "site.tar")
        subprocess.run(["tar", "-C", site, "-cf", site_tar, "."], check=True)
        rows = {}
        for case in cases:
            for server in servers:
                try:
                    small = measure(work, docroot, site_tar, mix, server, case, args.small,
                                    keep=args.keep and os.path.abspath(args.keep))
                    large = measure(work, docroot, site_tar, mix, server, case, args.large,
                                    keep=args.keep and os.path.abspath(args.keep))
                except SystemExit as e:
                    # h2o forks a server process valgrind does not follow.
                    print(f"{case:<11} {server:<22} not measured: {e}", flush=True)
                    rows[(case, server)] = None
                    continue
                per = (large - small) / (args.large - args.small)
                rows[(case, server)] = per
                print(f"{case:<11} {server:<22} {per:>9,.0f} instructions/request "
                      f"(N={args.small}: {small:,}; N={args.large}: {large:,})", flush=True)
        print(f"\nUser-space instructions per request (callgrind Ir, all threads; "
              f"(I(N={args.large}) - I(N={args.small})) / {args.large - args.small}; one keep-alive connection)\n")
        print("| case | " + " | ".join(servers) + " |")
        print("|---|" + "---|" * len(servers))
        for case in cases:
            print(f"| {case} | " + " | ".join(
                "-" if rows[(case, s)] is None else f"{rows[(case, s)]:,.0f}" for s in servers) + " |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
