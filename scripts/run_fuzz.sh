#!/usr/bin/env bash
# Runs every fuzz target for SECONDS on a copy of its seed corpus, all inside a temporary folder
# (working directory, corpus, artifacts), so nothing lands in the repository. A target fails when
# the fuzzer exits non-zero, leaves an artifact (crash, timeout, leak, oom) or prints a sanitizer
# report; every target runs, then the script exits 1 if any failed, printing for each failure
# the end of its log and the artifact (base64 and hex) to reproduce it with.
#   usage: run_fuzz.sh BUILD_DIR [SECONDS]
set -uo pipefail
build=$(cd "${1:?usage: run_fuzz.sh BUILD_DIR [SECONDS]}" && pwd) || exit 2
secs=${2:-15}
root=$(cd "$(dirname "$0")/.." && pwd)
targets=(fuzz_azure fuzz_azure_mm fuzz_burstgpt fuzz_mooncake fuzz_catalog fuzz_gml fuzz_nodelink
         fuzz_world fuzz_scenario fuzz_openai fuzz_schedule fuzz_gateway fuzz_sweep fuzz_demand fuzz_http)
# Sanitizer and libFuzzer reports; with -fno-sanitize-recover they also end the run, but a
# report is a failure even if something swallowed the exit status.
reports='ERROR: AddressSanitizer|ERROR: LeakSanitizer|ERROR: libFuzzer|runtime error:|SUMMARY: (Address|Undefined|Leak)Sanitizer'

work=$(mktemp -d "${TMPDIR:-/tmp}/infergrid-fuzz.XXXXXX") || exit 2
failed=()
start_all=$SECONDS

for t in "${targets[@]}"; do
  dir=$work/$t
  mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/tmp"
  seeds=$root/tests/fuzz/corpus/${t#fuzz_}
  why=""
  if [ ! -x "$build/$t" ]; then
    why="no executable $build/$t"
  elif ! compgen -G "$seeds/*" >/dev/null || ! cp "$seeds"/* "$dir/corpus/"; then
    why="no seed corpus in $seeds"
  fi
  t0=$SECONDS
  rc=0
  if [ -z "$why" ]; then
    # Inputs up to 4 KiB, or the largest seed: libFuzzer cuts longer seeds to max_len.
    maxlen=$(find "$dir/corpus" -type f -printf '%s\n' | sort -n | tail -n 1)
    if [ "${maxlen:-0}" -lt 4096 ]; then maxlen=4096; fi
    # The target writes each input to a file under TMPDIR: keep those in the work folder too.
    (cd "$dir" && TMPDIR="$dir/tmp" "$build/$t" -max_total_time="$secs" -max_len="$maxlen" -timeout=10 \
       -rss_limit_mb=2048 -artifact_prefix="$dir/artifacts/" -print_final_stats=1 corpus) \
      >"$dir/log" 2>&1 || rc=$?
    artifacts=$(find "$dir/artifacts" -maxdepth 1 -type f \
                  \( -name 'crash-*' -o -name 'timeout-*' -o -name 'leak-*' -o -name 'oom-*' \) | sort)
    if [ "$rc" -ne 0 ]; then why="fuzzer exited with status $rc"
    elif [ -n "$artifacts" ]; then why="artifacts left"
    elif grep -Eq "$reports" "$dir/log"; then why="sanitizer report in the log"
    fi
  fi
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$dir/log" 2>/dev/null | grep -Eo '[0-9]+$')
  if [ -z "$why" ]; then
    printf '== %-14s ok    %3ss  %s runs, corpus %s -> %s files\n' "$t" $((SECONDS - t0)) "${runs:-?}" \
      "$(ls "$seeds" | wc -l)" "$(ls "$dir/corpus" | wc -l)"
    continue
  fi
  failed+=("$t")
  printf '== %-14s FAIL  %3ss  %s\n' "$t" $((SECONDS - t0)) "$why"
  if [ -f "$dir/log" ]; then
    echo "-- last 60 lines of the log ($dir/log):"
    tail -n 60 "$dir/log"
  fi
  for a in $(find "$dir/artifacts" -maxdepth 1 -type f ! -name 'slow-unit-*' | sort); do
    echo "-- artifact $(basename "$a") ($(wc -c <"$a") bytes), base64:"
    base64 -w 76 "$a"
    echo "-- hex (first 256 bytes):"
    od -A x -t x1z -v -N 256 "$a"
    echo "-- reproduce: (cd /tmp && $build/$t -timeout=10 $a)"
  done
done

echo "== fuzz: ${#targets[@]} targets, ${secs}s each, $((SECONDS - start_all))s in all"
if [ ${#failed[@]} -gt 0 ]; then
  echo "== fuzz FAILED: ${failed[*]} (logs and artifacts kept in $work)"
  exit 1
fi
rm -rf "$work"
