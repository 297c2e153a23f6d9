#!/usr/bin/env bash
# Installs every build, test and example dependency from Debian's repositories.
# Idempotent: packages already present are skipped quickly.
set -euo pipefail
pkgs=(
  build-essential cmake make pkg-config git
  libasio-dev libssl-dev openssl nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev llvm-14
  python3 python3-numpy python3-msgpack python3-pytest python3-sklearn python3-torch
  python3-matplotlib dataset-fashion-mnist
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
