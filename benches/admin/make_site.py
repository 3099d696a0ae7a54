#!/usr/bin/env python3
"""Writes a deterministic fixture site: N files totalling about BYTES, in nested
directories, with an index.html. Content is pseudo-random (incompressible), so
compression cannot flatter an upload benchmark.

usage: make_site.py DIR FILES BYTES [SMALL_FRACTION]
SMALL_FRACTION of the files are 2 KiB (held in memory by the server's index);
the rest share the remaining bytes evenly."""
import os
import random
import sys

out, files, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
small_fraction = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
rng = random.Random(42)
small = int(files * small_fraction)
large = max(files - small - 1, 1)
large_size = max((total - small * 2048) // large, 1)
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "index.html"), "w") as f:
    f.write("<!doctype html><title>bench</title><h1>bench</h1>\n")
block = rng.randbytes(1 << 20)
for i in range(files - 1):
    size = 2048 if i < small else large_size
    d = os.path.join(out, f"d{i % 100:02d}", f"e{i % 7}")
    os.makedirs(d, exist_ok=True)
    start = rng.randrange(0, len(block))
    data = (block[start:] + block[:start]) * (size // len(block) + 1)
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(i.to_bytes(4, "little") + data[: size - 4])
