#!/usr/bin/env bash
# `cmake --install` of the server component into a temporary prefix: the server, the CLI and the
# dashboard land there, and the installed server finds its dashboard without flags.
#   tests/install/install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" --component server >/dev/null
for file in bin/lossguard-server bin/lossguard share/lossguard/web/index.html \
            share/lossguard/web/app.js share/lossguard/web/uPlot.iife.min.js \
            lib/systemd/system/lossguard-server.service; do
  [[ -e "$work/prefix/$file" ]] || { echo "not installed: $file"; exit 1; }
done
if [[ -e "$work/prefix/include" ]]; then
  echo "the server component installed the collector's headers"
  exit 1
fi
mkdir "$work/run"
bash "$source/tests/install/served_dashboard.sh" "$work/prefix" "$work/run"
echo "install: the server, the CLI and the dashboard under $work/prefix; the dashboard is served"
