#!/usr/bin/env bash
# Builds and installs the Python package into the project's Python environment
# (scripts/setup_python.sh makes it): `pip install --no-build-isolation .`, against the venv's own
# torch, with its CMake build kept in $LOSSGUARD_BUILD_DIR/python-wheel so that a rebuild only
# compiles what changed.
#   LOSSGUARD_NO_TORCH=1   skip it
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${LOSSGUARD_NO_TORCH:-0}" == 1 ]] && exit 0

venv=${LOSSGUARD_VENV:-$PWD/.venv}
build_dir=${LOSSGUARD_BUILD_DIR:-build}
mkdir -p "$build_dir"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation \
  --no-deps --force-reinstall --config-settings=build-dir="$(cd "$build_dir" && pwd)/python-wheel" .
