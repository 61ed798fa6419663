#!/usr/bin/env bash
# Installs what is missing (Debian packages, and the Python environment .venv), builds everything
# with warnings as errors and pip-installs the Python package into .venv, checks formatting, and runs
# every test (unit, end-to-end, schema, benchmark smoke runs) with ctest; then the sanitizer stage
# (scripts/sanitize.sh: clang ASan+UBSan build of the server, its unit and e2e tests, and each fuzz
# target for a bounded time; then a TSan build running the concurrency tests).
#   scripts/test.sh                 the whole suite
#   scripts/test.sh -L unit         extra arguments go to ctest (here: the quick subset); with
#                                   arguments the sanitizer stage is skipped
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/check_format.sh

build_dir=${LOSSGUARD_BUILD_DIR:-build}
stage() { echo "== $1 ($(date -u +%H:%M:%S))"; }
stage "build"
# Unity builds (several sources a compiler run): Beast, Asio, nlohmann, gtest and LibTorch headers
# are parsed once per group of sources instead of once per file: 7.3 minutes instead of 14 on a
# 2-core machine. scripts/demo.sh and the image build each file on its own.
# -g1 (line tables, what a backtrace needs) instead of -g: full debug information of the Beast and
# gtest templates was a third of the compiler's time on the largest sources (58 s against 36 s).
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOSSGUARD_WERROR=ON \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" -DCMAKE_UNITY_BUILD=ON >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
stage "python package (pip install into .venv)"
LOSSGUARD_BUILD_DIR=$build_dir bash scripts/build_python.sh
stage "ctest"
ctest --test-dir "$build_dir" --output-on-failure --timeout 600 -j 2 "$@"
if [[ $# -eq 0 ]]; then
  stage "sanitizers and fuzzing"
  bash scripts/sanitize.sh
fi
stage "done"
