#!/usr/bin/env python3
"""Instructions per request per function, from two callgrind runs of one case
kept by `callgrind.py --keep DIR` (N = small and N = large requests): the
difference of each function's self cost divided by the difference of N, so
start-up and shutdown cancel as in the totals.

usage: benches/compare/per_function.py SMALL.out LARGE.out N_SMALL N_LARGE [--top 40]
"""
import argparse
import re
import subprocess


def self_costs(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", path],
                         check=True, capture_output=True, text=True).stdout
    costs = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.*)$", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        name = re.sub(r"\s+\[[^\]]*\]$", "", m.group(2))
        name = name.split(":", 1)[1] if name.startswith(("???:", "/")) else name
        costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("small")
    parser.add_argument("large")
    parser.add_argument("n_small", type=int)
    parser.add_argument("n_large", type=int)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    small, large = self_costs(args.small), self_costs(args.large)
    n = args.n_large - args.n_small
    per = {k: (large.get(k, 0) - small.get(k, 0)) / n for k in set(small) | set(large)}
    total = sum(per.values())
    print(f"{total:,.0f} instructions per request in all\n")
    for name, cost in sorted(per.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"{cost:8,.0f} {100 * cost / total:5.1f} %  {name[:140]}")


if __name__ == "__main__":
    main()
