#!/usr/bin/env bash
# Installs the Debian 12 packages the build and tests need, only when one is missing.
set -euo pipefail
pkgs=(cmake ninja-build g++ make clang libclang-rt-14-dev libboost-dev nlohmann-json3-dev
      libyaml-cpp-dev libcli11-dev libfmt-dev libspdlog-dev coinor-libclp-dev
      libgtest-dev libgmock-dev libbenchmark-dev python3 chromium libsimgrid-dev
      redis-server libhiredis-dev prometheus libssl-dev openssl libopenmpi-dev openmpi-bin)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Node.js and npm for the report's front-end parts (web/) and the browser test.
if ! command -v npm >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
# The front-end parts, pinned by web/package-lock.json.
if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
