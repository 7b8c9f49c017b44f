#!/usr/bin/env bash
# Runs every fuzz target for a short while on a copy of its seed corpus.
set -euo pipefail
build=$1; secs=${2:-15}
root=$(cd "$(dirname "$0")/.." && pwd)
for t in fuzz_azure fuzz_azure_mm fuzz_burstgpt fuzz_mooncake fuzz_catalog fuzz_gml fuzz_nodelink fuzz_world fuzz_scenario fuzz_openai fuzz_gateway; do
  corpus=$(mktemp -d)
  cp "$root/tests/fuzz/corpus/${t#fuzz_}/"* "$corpus/"
  echo "== $t (${secs}s)"
  "$build/$t" -max_total_time="$secs" -max_len=4096 -print_final_stats=0 "$corpus" 2>&1 | grep -E "Done|ERROR|SUMMARY|crash" || true
  "$build/$t" -runs=0 "$corpus" >/dev/null 2>&1  # re-check the grown corpus; fails on a crash
  rm -rf "$corpus"
done
