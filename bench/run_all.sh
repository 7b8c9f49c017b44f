#!/usr/bin/env bash
# Simulation speed, each number the median of several runs, with its baseline in the same run:
#  1. the Azure conversation trace (19,366 requests) on 8 replicas of llama2-70b, h100-80gb TP8:
#     closed-form decode vs one event per decode iteration (--step-by-step);
#  2. generated traces of 1M, 3M and 10M requests: simulated requests per wall second and peak
#     memory (flat in trace length means the three peaks agree);
#  3. micro-benchmarks (Google Benchmark).
set -euo pipefail
build=${1:-build}
bin=$build/infergrid
runs=${RUNS:-5}
tmp=$(mktemp -d)
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
time_of() {  # prints "seconds max_rss_kb" of one run (wall time to the nanosecond clock)
  local t0 t1
  t0=$(date +%s%N)
  /usr/bin/time -f "%M" -o "$tmp/t" "$@" >/dev/null 2>&1
  t1=$(date +%s%N)
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", (b-a)/1e9}') $(cat "$tmp/t")"
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
azure="sim --trace data/traces/AzureLLMInferenceTrace_conv.csv --model llama2-70b --gpu h100-80gb --tp 8 --replicas 8 --no-progress --no-requests-csv --out $tmp/a"
for mode in "" "--step-by-step" "--write-csv"; do
  [ "$mode" = "--write-csv" ] && { azure=${azure/--no-requests-csv /}; mode=""; label="closed-form, writing requests.csv"; } || label=${mode:-closed-form}
  for i in $(seq "$runs"); do time_of "$bin" $azure $mode; done | awk '{print $1}' > "$tmp/w"
  echo "azure-conv 19366 requests ($label): median wall $(median < "$tmp/w") s over $runs runs"
done
for n in 1000000 3000000 10000000; do
  gen="sim --model llama3-8b --gpu h100-80gb --tp 1 --replicas 16 --router least-outstanding --generate $n --rate 200 --no-progress --no-requests-csv --out $tmp/g"
  r=$(( n >= 10000000 ? 3 : runs ))
  for i in $(seq "$r"); do time_of taskset -c 0 "$bin" $gen; done > "$tmp/w"
  wall=$(awk '{print $1}' "$tmp/w" | median)
  rss=$(awk '{print $2}' "$tmp/w" | median)
  echo "generated $n requests (one core): median wall $wall s = $(awk -v n=$n -v w=$wall 'BEGIN{printf "%.0f", n/w}') requests/s, peak RSS ${rss} KB"
done
"$build/bench_micro" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true 2>/dev/null | grep -E "median|Benchmark"
rm -rf "$tmp"
