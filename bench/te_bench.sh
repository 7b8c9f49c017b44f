#!/usr/bin/env bash
# Traffic engineering: the exact LP (CLP on the full path formulation) and the fast allocator
# (the potential method, certified within 0.5%, for MLU and max-flow; column-generation
# water-filling levels for max-min), side by side on the same instances in
# one run. 4 lowest-latency paths per demand. Prints one markdown row per (instance, objective):
# solve times (the median over the B4 traffic matrices), objectives and their ratio.
# LP_TIMEOUT bounds each LP solve (seconds).
set -uo pipefail
bin=${1:-build}/infergrid
data=$(cd "$(dirname "$0")/../data/net" && pwd)
lp_timeout=${LP_TIMEOUT:-600}
tmp=$(mktemp -d)
field() { python3 -c "import json,sys; d=json.load(open('$1')); print(d['$2'])" 2>/dev/null; }
run() {  # name objective args...
  local name=$1 obj=$2; shift 2
  local lp_ms="timeout" lp_val="-" fast_ms fast_val
  if timeout "$lp_timeout" "$bin" te "$@" --objective "$obj" --solver lp --out "$tmp/lp.json" >/dev/null 2>&1; then
    lp_ms=$(field "$tmp/lp.json" solve_ms); lp_val=$(field "$tmp/lp.json" objective)
  fi
  "$bin" te "$@" --objective "$obj" --solver fast --out "$tmp/fast.json" >/dev/null 2>&1 || { echo "| $name | $obj | fast failed |"; return; }
  fast_ms=$(field "$tmp/fast.json" solve_ms); fast_val=$(field "$tmp/fast.json" objective)
  local fast_bound; fast_bound=$(field "$tmp/fast.json" bound)
  local demands; demands=$(field "$tmp/fast.json" demand_count)
  python3 - "$name" "$obj" "$demands" "$lp_ms" "$lp_val" "$fast_ms" "$fast_val" "$lp_timeout" "$fast_bound" <<'PY'
import sys
name, obj, dem, lp_ms, lp_val, fast_ms, fast_val, limit, fast_bound = sys.argv[1:]
fast_ms = float(fast_ms); fast_val = float(fast_val); fast_bound = float(fast_bound)
gap = abs(fast_val - fast_bound) / max(abs(fast_bound), 1e-12)
if lp_ms == "timeout":
    bound = float(limit) * 1000 / max(fast_ms, 1e-3)
    print(f"| {name} | {obj} | {dem} | > {limit} s (timeout) | - | {fast_ms:.0f} | {fast_val:.6g} | {gap:.2%} | > {bound:.0f}x | - |")
else:
    lp_ms = float(lp_ms); lp_val = float(lp_val)
    print(f"| {name} | {obj} | {dem} | {lp_ms:.0f} | {lp_val:.6g} | {fast_ms:.0f} | {fast_val:.6g} | {gap:.2%} | {lp_ms/max(fast_ms,1e-3):.1f}x | {fast_val/lp_val:.4f} |")
PY
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F), LP timeout ${lp_timeout}s"
echo "| instance | objective | demands | LP ms | LP objective | fast ms | fast objective | fast's certified gap | speed-up | fast / LP |"
echo "|---|---|---|---|---|---|---|---|---|---|"
# OBJECTIVES picks a subset (default: all three).
objectives=${OBJECTIVES:-mlu max-flow max-min}
for obj in $objectives; do
  for tm in 0 1 2 3 4; do run "B4 real TM $tm" "$obj" --topology "$data/B4.json" --demands "$data/tm/B4_real_$tm.csv"; done
done
for obj in $objectives; do
  run "UsCarrier gravity" "$obj" --topology "$data/UsCarrier.json" --gravity 50000
done
for obj in $objectives; do
  run "Cogentco gravity" "$obj" --topology "$data/topology-zoo/Cogentco.gml" --gravity 25000
done
for obj in $objectives; do
  run "Kdl gravity top-20k" "$obj" --topology "$data/Kdl.json" --gravity 1000000 --gravity-pairs 20000
  # ASN2k max-min also on the 2,000 largest pairs, where the LP finishes (~230 levels, one per
  # distinct fair share).
  [ "$obj" = max-min ] && run "ASN2k gravity top-2k" "$obj" --topology "$data/ASN2k.json" --gravity 4000000 --gravity-pairs 2000
  run "ASN2k gravity top-20k" "$obj" --topology "$data/ASN2k.json" --gravity 4000000 --gravity-pairs 20000
done
rm -rf "$tmp"
