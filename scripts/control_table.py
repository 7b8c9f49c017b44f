#!/usr/bin/env python3
"""Runs a scenario under every baseline controller and prints the comparison as a Markdown table.

usage: scripts/control_table.py BIN OUTDIR LABEL -- [infergrid sim arguments...]
Each controller's run goes to OUTDIR/LABEL-CONTROLLER; rerunning reuses summaries already there.
"""
import json
import os
import subprocess
import sys
import time

CONTROLLERS = ["static", "reactive", "skyserve", "dynamo"]


def main():
    if len(sys.argv) < 5 or "--" not in sys.argv:
        sys.exit(__doc__)
    binary, outdir, label = sys.argv[1:4]
    args = sys.argv[sys.argv.index("--") + 1:]
    rows = []
    for c in CONTROLLERS:
        out = os.path.join(outdir, f"{label}-{c}")
        summary = os.path.join(out, "summary.json")
        wall = None
        if not os.path.exists(summary):
            t0 = time.time()
            subprocess.run([binary, "sim", *args, "--controller", c, "--no-progress", "--out", out],
                           check=True, stdout=subprocess.DEVNULL)
            wall = time.time() - t0
        with open(summary) as f:
            s = json.load(f)
        rows.append((c, s, wall))
    classes = [k["name"] for k in rows[0][1]["classes"]]
    head = ["controller"] + [f"SLO {n}" for n in classes] + [
        "goodput req/s", "lost", "rejected", "GPU-hours", "IT kWh", "starts", "stops", "cold start p99 s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for c, s, _ in rows:
        f = s["fleet"]
        cells = [f"`{c}`"] + [f"{100 * k['slo_attainment']:.1f}%" for k in s["classes"]]
        cells += [f"{sum(k['goodput_rps'] for k in s['classes']):.2f}", str(s["requests"]["lost"]),
                  str(s["requests"]["rejected"]), f"{f['gpu_hours']:.0f}", f"{f['it_kwh']:.0f}",
                  str(f["replica_starts"]), str(f["replica_stops"]),
                  f"{f['cold_start_s']['total']['p99']:.0f}" if f["cold_starts"] else "-"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
