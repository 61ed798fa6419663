#!/usr/bin/env bash
# Installs what is missing, builds everything with warnings as errors, checks formatting, and runs
# every test (unit, end-to-end, schema, benchmark smoke runs) with ctest.
#   scripts/test.sh                 the whole suite
#   scripts/test.sh -L unit         extra arguments go to ctest (here: the quick subset)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/check_format.sh

build_dir=${LOSSGUARD_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOSSGUARD_WERROR=ON >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
ctest --test-dir "$build_dir" --output-on-failure --timeout 600 -j 2 "$@"
