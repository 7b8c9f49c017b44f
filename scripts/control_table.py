#!/usr/bin/env python3
"""Runs a scenario under every baseline controller and prints the comparison as a Markdown table.

usage: scripts/control_table.py BIN OUTDIR LABEL [--only] [--row NAME=CONTROLLER[,EXTRA ARG...]]... -- [sim args...]
Rows default to the four baselines; a --row adds one more (e.g. a tuned SkyServe:
--row skyserve-tuned=skyserve,--control,target_qps_per_replica@deepseek-v3=0.3); --only leaves
the baselines out (only the --row rows).
Each row's run goes to OUTDIR/LABEL-NAME; rerunning reuses summaries already there.
"""
import json
import os
import subprocess
import sys

BASELINES = ["static", "reactive", "skyserve", "dynamo"]


def main():
    if len(sys.argv) < 5 or "--" not in sys.argv:
        sys.exit(__doc__)
    binary, outdir, label = sys.argv[1:4]
    sep = sys.argv.index("--")
    opts, args = sys.argv[4:sep], sys.argv[sep + 1:]
    rows = [] if "--only" in opts else [(c, c, []) for c in BASELINES]
    for i, o in enumerate(opts):
        if o == "--row":
            name, spec = opts[i + 1].split("=", 1)
            parts = spec.split(",")
            rows.append((name, parts[0], parts[1:]))
    done = []
    for name, controller, extra in rows:
        out = os.path.join(outdir, f"{label}-{name}")
        summary = os.path.join(out, "summary.json")
        if not os.path.exists(summary):
            subprocess.run([binary, "sim", *args, "--controller", controller, *extra, "--no-progress", "--out", out],
                           check=True, stdout=subprocess.DEVNULL)
        with open(summary) as f:
            done.append((name, json.load(f)))
    classes = [k["name"] for k in done[0][1]["classes"]]
    head = ["controller"] + [f"SLO {n}" for n in classes] + [
        "goodput req/s", "lost", "GPU-hours", "IT kWh", "starts", "stops", "cold start p99 s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, s in done:
        f = s["fleet"]
        cells = [f"`{name}`"] + [f"{100 * k['slo_attainment']:.1f}%" for k in s["classes"]]
        cells += [f"{sum(k['goodput_rps'] for k in s['classes']):.1f}", str(s["requests"]["lost"]),
                  f"{f['gpu_hours']:,.0f}", f"{f['it_kwh']:,.0f}", str(f["replica_starts"]), str(f["replica_stops"]),
                  f"{f['cold_start_s']['total']['p99']:.0f}" if f["cold_starts"] else "-"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
