#!/usr/bin/env bash
# Installs every Debian 12 package lossguard's build and tests need. Idempotent: packages already
# present are not reinstalled, and nothing is printed for them.
#   scripts/setup.sh            build + test dependencies, including LibTorch for the collector
#   LOSSGUARD_NO_TORCH=1 ...    skip LibTorch/gloo (server-only machines)
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates
  libboost-dev                 # Beast, Asio (header-only)
  libssl-dev openssl           # https in the client, TLS in the server; the tests' throwaway CA
  nlohmann-json3-dev
  libsqlite3-dev sqlite3
  libpq-dev postgresql          # the PostgreSQL backend; its tests start their own server
  nginx                        # the load balancer docker/ ships, run by a test in front of two servers
  prometheus-cpp-dev
  libcli11-dev                 # command-line parsing
  libspdlog-dev libfmt-dev     # logging
  libgtest-dev libgmock-dev googletest
  libbenchmark-dev
  clang-format
  clang libclang-rt-14-dev      # the sanitizer build and libFuzzer (scripts/sanitize.sh)
  python3 python3-jsonschema   # schema conformance test
  python3-yaml                 # docker/ consistency test
  prometheus                   # the real Prometheus server and promtool, for end-to-end tests
  prometheus-alertmanager      # the real Alertmanager and amtool, for end-to-end tests
)
packages+=(chromium)           # browser test of the web dashboard (driven by playwright-core)
# Node.js and npm build the web dashboard; a machine that already has them (e.g. from NodeSource)
# keeps its own.
command -v npm >/dev/null || packages+=(nodejs npm)
if [[ "${LOSSGUARD_NO_TORCH:-0}" != 1 ]]; then
  packages+=(libtorch-dev libgloo-dev)
  # The Python package (collector/python): a torch extension built against Debian's python3-torch,
  # which shares its libtorch with libtorch-dev; tests run under Debian's pytest.
  packages+=(python3-dev python3-torch pybind11-dev python3-pybind11 python3-pytest
             python3-venv)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: done"
fi

# The project's Python environment (torch from PyPI, transformers, TRL: .venv), made with the Debian
# packages above.
bash "$(dirname "$0")/setup_python.sh"
