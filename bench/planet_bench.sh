#!/usr/bin/env bash
# The planet twin's speed and the flow network against SimGrid, medians of several runs:
#  1. `infergrid sim` (24 h of the embedded world): wall time, requests/s, peak memory;
#  2. bench/simgrid_compare: the same flows through net::FlowNetwork and SimGrid (S4U, CM02
#     max-min), transfer times compared and both timed in the same process.
set -euo pipefail
build=${1:-build}
runs=${RUNS:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
for i in $(seq "$runs"); do
  /usr/bin/time -f "%e %M" -o "$tmp/t" "$build/infergrid" sim --no-progress --out "$tmp/day" > "$tmp/log"
  req=$(grep -o '[0-9]* requests in' "$tmp/log" | awk '{print $1}')
  read -r wall rss < "$tmp/t"
  echo "$wall $rss $req" >> "$tmp/day.txt"
done
w=$(awk '{print $1}' "$tmp/day.txt" | median)
m=$(awk '{print $2}' "$tmp/day.txt" | median)
n=$(awk 'NR==1{print $3}' "$tmp/day.txt")
echo "planet 24 h: $n requests, median wall $w s over $runs runs ($(awk -v n="$n" -v w="$w" 'BEGIN{printf "%.0f", n/w}') requests/s), peak RSS $((m / 1024)) MB"
if [ -x "$build/simgrid_compare" ]; then
  for flows in 2000 20000; do
    for seed in $(seq "$runs"); do "$build/simgrid_compare" "$flows" "$seed" | tee -a "$tmp/sg-$flows.log" >/dev/null; done
    r=$(grep -o 'SimGrid / infergrid = [0-9.]*' "$tmp/sg-$flows.log" | awk '{print $NF}' | median)
    d=$(grep -o 'max [0-9.e+-]*' "$tmp/sg-$flows.log" | awk '{print $2}' | sort -g | tail -1)
    echo "simgrid_compare $flows flows: median SimGrid/infergrid wall-time ratio $r over $runs seeds; largest transfer-time difference $d"
    grep 'wall time' "$tmp/sg-$flows.log"
  done
fi
