#!/usr/bin/env python3
"""The busiest links of a planet run, as a Markdown table: ranked by their busiest 15 minutes'
mean utilization (links.csv peak_utilization), with their day's mean and, from links_1s.csv, the
p50, p95 and p99 of 1-second utilization in their busiest bucket (the highest p95, then p99).
Utilizations are the busier way's.

    python3 scripts/busiest_links.py out/ [N]      # N links, default 10
"""
import csv
import sys


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: busiest_links.py RUN_DIR [N]")
    run, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10
    tails = {}
    with open(f"{run}/links_1s.csv", newline="") as f:
        for row in csv.DictReader(f):
            key = (row["a"], row["b"])
            val = (float(row["p95_1s"]), float(row["p99_1s"]), float(row["p50_1s"]), float(row["t_h"]))
            if key not in tails or val[:2] > tails[key][:2]:
                tails[key] = val
    with open(f"{run}/links.csv", newline="") as f:
        links = [(float(r["peak_utilization"]), float(r["mean_utilization"]), r["a"], r["b"], r["gbps"])
                 for r in csv.DictReader(f)]
    links.sort(reverse=True)
    print("| link | Gbit/s (model) | day mean | busiest 15 min mean | 1 s p50 / p95 / p99, busiest bucket (UTC) |")
    print("|---|---|---|---|---|")
    for peak, mean, a, b, gbps in links[:n]:
        p95, p99, p50, t = tails.get((a, b), (0, 0, 0, 0))
        print(f"| {a} - {b} | {gbps} | {mean:.0%} | {peak:.0%} | {p50:.0%} / {p95:.0%} / {p99:.0%} ({int(t):02d}:{int(round((t % 1) * 60)):02d}) |")
    over = sum(1 for v in tails.values() if v[0] > 0.30)
    print(f"\n{over} of {len(tails)} links above 30% at p95 of 1-second utilization in their busiest 15 minutes.")


if __name__ == "__main__":
    main()
