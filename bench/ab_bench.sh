#!/usr/bin/env bash
# Two infergrid binaries side by side on the embedded world: runs alternate (A, B, A, B, ...) so
# that a shared machine's noise falls on both; prints each one's median wall time and peak memory,
# the median of the per-pair ratios B / A, and whether their summaries are byte-identical.
#   usage: ab_bench.sh BASELINE_BINARY NEW_BINARY [HOURS] [RUNS]
set -euo pipefail
a=${1:?usage: ab_bench.sh BASELINE NEW [HOURS] [RUNS]}
b=${2:?usage: ab_bench.sh BASELINE NEW [HOURS] [RUNS]}
hours=${3:-2}
runs=${4:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F); $hours h of the embedded world, $runs pairs"
for i in $(seq "$runs"); do
  for who in a b; do
    bin=$a; [ "$who" = b ] && bin=$b
    /usr/bin/time -f "%e %M" -o "$tmp/t" "$bin" sim --no-progress --no-requests-csv --hours "$hours" --out "$tmp/$who" > /dev/null
    cat "$tmp/t" >> "$tmp/$who.txt"
  done
  paste "$tmp/a.txt" "$tmp/b.txt" | tail -1 | awk '{print $3 / $1}' >> "$tmp/ratio.txt"
done
for who in a b; do
  echo "$who: median wall $(awk '{print $1}' "$tmp/$who.txt" | median) s, peak RSS $(( $(awk '{print $2}' "$tmp/$who.txt" | median) / 1024 )) MB"
done
echo "median wall-time ratio new / baseline: $(median < "$tmp/ratio.txt")"
if cmp -s "$tmp/a/summary.json" "$tmp/b/summary.json"; then echo "summaries: byte-identical"; else echo "summaries: differ"; fi
