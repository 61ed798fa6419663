#!/usr/bin/env bash
# Installs the built project into a fresh prefix and builds and runs cmake/project-import-cmake
# against it: find_package(lossguard) + lossguard::collector work for a trainer's own project.
#   tests/package_consumer.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$source/cmake/project-import-cmake" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null
output=$("$work/consumer/consumer")  # whole, then searched (no `| grep -q` under pipefail)
grep -q '"run":"consumer"' <<<"$output" || { echo "consumer printed: $output"; exit 1; }
echo "package consumer: built and ran against $work/prefix"
