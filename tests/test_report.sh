#!/usr/bin/env bash
# The browser test: a planet run writes report.html; headless Debian chromium (playwright-core)
# opens it from disk and checks the map (every site and link) and every chart render, with no
# console error and no network request.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" sim --hours 1 --scale 0.02 --out "$tmp/day" --no-progress >/dev/null
sites=$(($(wc -l < "$tmp/day/sites.csv") - 1))
links=$(($(wc -l < "$tmp/day/links.csv") - 1))
node "$root/web/test-report.mjs" "$tmp/day/report.html" "$sites" "$links"
"$bin" sim --world "$root/tests/scenarios/planet/two-sites.yaml" --hours 0.5 --out "$tmp/small" --no-progress >/dev/null
node "$root/web/test-report.mjs" "$tmp/small/report.html" 2 1
