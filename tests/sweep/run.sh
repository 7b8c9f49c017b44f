#!/usr/bin/env bash
# The sweep end to end: the same grid in turn and over two Open MPI ranks gives the same tables;
# a run that fails is a row with its error (and exit code 1) while the others complete; a bad
# grid is refused with its file, line and field; the page has a chart per metric.
set -euo pipefail
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cat > "$tmp/grid.yaml" <<EOF
name: ci
hours: 0.5
scenarios:
  - {name: surge, world: $here/../scenarios/planet/fleet-surge.yaml}
  - {name: two-sites, world: $here/../scenarios/planet/two-sites.yaml, hours: 0.25}
controllers: [static, skyserve]
seeds: [1, 2]
EOF
"$bin" sweep --grid "$tmp/grid.yaml" --out "$tmp/seq" > "$tmp/seq.log" || { cat "$tmp/seq.log"; fail "sequential sweep"; }
grep -q "8 runs (0 failed) over 1 rank" "$tmp/seq.log" || { cat "$tmp/seq.log"; fail "sequential summary line"; }
[ "$(wc -l < "$tmp/seq/sweep.csv")" -eq 9 ] || fail "sweep.csv should have 8 rows"
[ "$(wc -l < "$tmp/seq/sweep_summary.csv")" -eq 5 ] || fail "sweep_summary.csv should have 4 groups"
mpirun -np 2 --allow-run-as-root --oversubscribe "$bin" sweep --grid "$tmp/grid.yaml" --out "$tmp/mpi" > "$tmp/mpi.log" 2>&1 \
  || { cat "$tmp/mpi.log"; fail "mpirun sweep"; }
grep -q "8 runs (0 failed) over 2 ranks" "$tmp/mpi.log" || { cat "$tmp/mpi.log"; fail "mpi summary line"; }
cmp "$tmp/seq/sweep.csv" "$tmp/mpi/sweep.csv" || fail "sweep.csv differs between 1 and 2 ranks"
cmp "$tmp/seq/sweep_summary.csv" "$tmp/mpi/sweep_summary.csv" || fail "sweep_summary.csv differs between 1 and 2 ranks"
# skyserve beats static on the surge test bed in every seed (goodput), as the fleet tests say.
awk -F, 'NR>1 && $2=="surge" {g[$3]+=$12; n[$3]++} END {exit !(g["skyserve"]/n["skyserve"] > 1.5*g["static"]/n["static"])}' \
  "$tmp/seq/sweep.csv" || fail "skyserve's goodput on the surge should exceed static's by half"
grep -q 'id="data"' "$tmp/seq/sweep.html" || fail "sweep.html has no data"
grep -q '"metric":"critical_slo"' "$tmp/seq/sweep.html" || fail "sweep.html lacks the critical SLO"
# A failed run is reported and the sweep goes on.
cat > "$tmp/bad-run.yaml" <<EOF
hours: 0.25
scenarios:
  - {name: ok, world: $here/../scenarios/planet/two-sites.yaml}
  - {name: missing, world: $tmp/nowhere.yaml}
EOF
if "$bin" sweep --grid "$tmp/bad-run.yaml" --out "$tmp/bad" > "$tmp/bad.log" 2>&1; then fail "a failed run should exit 1"; fi
grep -q "run 1 (missing, static, nearest, fair, seed 1) failed: .*nowhere.yaml" "$tmp/bad.log" || { cat "$tmp/bad.log"; fail "failure message"; }
grep -q "^0,ok,static,nearest,fair,1,ok," "$tmp/bad/sweep.csv" || fail "the good run's row"
grep -q "^1,missing,static,nearest,fair,1,failed," "$tmp/bad/sweep.csv" || fail "the failed run's row"
# A bad grid: file, line and field.
printf 'scenarios:\n  - {name: a}\ncontrollers: [static, clairvoyant]\n' > "$tmp/bad-grid.yaml"
if "$bin" sweep --grid "$tmp/bad-grid.yaml" --out "$tmp/x" > "$tmp/grid.log" 2>&1; then fail "a bad grid should be refused"; fi
grep -q "bad-grid.yaml:3: field 'controllers': unknown 'clairvoyant'" "$tmp/grid.log" || { cat "$tmp/grid.log"; fail "bad grid message"; }
# Policies: the listed controller and router pairs, not their product.
cat > "$tmp/pairs.yaml" <<EOF
hours: 0.25
scenarios:
  - {name: two, world: $here/../scenarios/planet/two-sites.yaml}
policies:
  - {controller: static}
  - {controller: infergrid, router: infergrid}
EOF
"$bin" sweep --grid "$tmp/pairs.yaml" --out "$tmp/pairs" > "$tmp/pairs.log" 2>&1 || { cat "$tmp/pairs.log"; fail "policies sweep"; }
[ "$(wc -l < "$tmp/pairs/sweep.csv")" -eq 3 ] || fail "policies: two runs expected"
grep -q "^0,two,static,nearest,fair,1,ok," "$tmp/pairs/sweep.csv" || fail "policies: static with nearest"
grep -q "^1,two,infergrid,infergrid,fair,1,ok," "$tmp/pairs/sweep.csv" || fail "policies: infergrid with its router"
printf 'scenarios:\n  - {name: a}\npolicies:\n  - {controller: static, router: teleport}\n' > "$tmp/bad-pair.yaml"
if "$bin" sweep --grid "$tmp/bad-pair.yaml" --out "$tmp/x" > "$tmp/pair.log" 2>&1; then fail "a bad policy should be refused"; fi
grep -q "bad-pair.yaml:4: field 'router': unknown 'teleport'" "$tmp/pair.log" || { cat "$tmp/pair.log"; fail "bad policy message"; }
echo "sweep: 1 passed, 0 failed"
