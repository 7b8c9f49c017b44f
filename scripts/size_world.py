#!/usr/bin/env python3
"""Sizes the default world's cloud deployments from a measured day, as an operator plans capacity.

usage: scripts/size_world.py SUMMARY_JSON [TARGET] > data/world/sizing.csv

For each deployment of a cloud site (core or regional) in the summary of a static-controller day
(nearest router): replicas = max(1, ceil(declared x peak-hour saturation / TARGET)), where the
saturation is the peak hour's mean batch occupancy (max of KV usage and running / max_num_seqs,
per serving replica); a deployment measured saturated (>= 0.85: the figure only says "more") gets
twice its replicas. Occupancy grows faster than load once queues form, so it takes rounds with a
rising TARGET (docs/planet.md "Scale and sizing": 0.45 from the budget-sized world, then 0.55).
build_world.py reads the file.
"""
import csv
import json
import math
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    s = json.load(open(sys.argv[1]))
    target = float(sys.argv[2]) if len(sys.argv) > 2 else 0.55
    tier = {x["id"]: x["tier"] for x in s["sites"]}
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["site", "model", "replicas", "measured_replicas", "measured_peak_saturation"])
    for d in s["fleet"]["deployments"]:
        if tier.get(d["site"]) == "edge":
            continue
        n, peak = d["replicas_declared"], d["saturation"]["peak_hour"]
        want = 2 * n if peak >= 0.85 else max(1, math.ceil(n * peak / target - 1e-9))
        out.writerow([d["site"], d["model"], want, n, f"{peak:.4f}"])


if __name__ == "__main__":
    main()
