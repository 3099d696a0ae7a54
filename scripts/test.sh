#!/usr/bin/env bash
# The whole test suite, for both file I/O backends (see docs/BENCHMARKS.md,
# "io_uring"): first with io_backend = auto (io_uring wherever the kernel
# and seccomp allow it, as on the CI machines), then again with epoll forced.
# The second pass leaves out tests/docker.rs, tests/traefik.rs and
# tests/traefik_routing.rs: servers inside containers do
# not see this environment, and tests/docker.rs already runs the image under both
# backends (tests `ensure_creates_…` and `the_io_backend_follows_…`).
# Pass 2 also runs every server with one worker (no extra worker threads,
# src/serve/workers.rs); pass 1 with one per CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== test pass 1: io_backend=auto (io_uring where allowed)"
PROJECT_HTTP_IO_BACKEND=auto cargo test --locked
echo "== test pass 2: io_backend=epoll, one worker"
tests=()
for file in tests/*.rs; do
    name=$(basename "$file" .rs)
    case "$name" in docker | traefik | traefik_routing) ;; *) tests+=(--test "$name") ;; esac
done
PROJECT_HTTP_IO_BACKEND=epoll PROJECT_HTTP_WORKERS=1 cargo test --locked --lib "${tests[@]}"
