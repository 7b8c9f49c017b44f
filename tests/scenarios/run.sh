#!/usr/bin/env bash
# Scenario tests: small runs whose summaries are compared with saved expectations; on a
# difference, expected and actual are printed side by side. UPDATE=1 rewrites the expectations.
set -uo pipefail
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
data=$(cd "$here/../../data" && pwd)
tmp=$(mktemp -d)
fail=0
while IFS='|' read -r name args; do
  [ -z "$name" ] && continue
  case "$name" in \#*) continue ;; esac
  args=${args//@DATA@/$data}
  args=${args//@HERE@/$here}
  # shellcheck disable=SC2086
  if ! "$bin" sim $args --no-progress --no-requests-csv --out "$tmp/$name" >"$tmp/$name.log" 2>&1; then
    echo "FAIL $name: exit code $?"; cat "$tmp/$name.log"; fail=1; continue
  fi
  want="$here/expected/$name.json"
  if [ "${UPDATE:-0}" = 1 ]; then cp "$tmp/$name/summary.json" "$want"; echo "updated $name"; continue; fi
  if ! diff -q "$want" "$tmp/$name/summary.json" >/dev/null 2>&1; then
    echo "FAIL $name: summary differs (expected | actual)"
    diff -y -W 160 "$want" "$tmp/$name/summary.json" | grep -E '[|<>]' | head -40
    fail=1
  else
    echo "ok   $name"
  fi
done < "$here/scenarios.txt"
rm -rf "$tmp"
exit $fail
