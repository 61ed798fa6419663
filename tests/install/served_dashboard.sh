#!/usr/bin/env bash
# Starts PREFIX/bin/lossguard-server without --web-root and checks that it serves the dashboard
# installed under PREFIX (not the build tree's): its log names the directory, and / and the app
# script come back. Used by install_test.sh and deb_package_test.sh.
#   tests/install/served_dashboard.sh PREFIX WORK_DIR
set -euo pipefail
prefix=$1
work=$2
"$prefix/bin/lossguard-server" --listen 127.0.0.1:0 --db "$work/lossguard.db" \
  >"$work/server.out" 2>"$work/server.err" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/server.out" 2>/dev/null && break
  sleep 0.1
done
url=$(grep -o 'http://[^ ]*' "$work/server.out") || { cat "$work/server.err"; exit 1; }
grep -q "dashboard from $prefix/share/lossguard/web" "$work/server.err" ||
  { echo "the server did not serve the installed dashboard:"; cat "$work/server.err"; exit 1; }
# Each answer read whole before it is searched: `curl ... | grep -q` under pipefail fails whenever
# grep has found its text and exited before curl wrote the rest (app.js, the CLI's help).
expect() {  # expect WHAT TEXT PATTERN
  grep -q -- "$3" <<<"$2" || { echo "$1 does not contain $3"; exit 1; }
}
expect "GET /" "$(curl -sf "$url/")" '<title>lossguard</title>'
expect "GET /assets/app.js" "$(curl -sf "$url/assets/app.js")" 'lossguardDashboard'
expect "GET /healthz" "$(curl -sf "$url/healthz")" '"status":"ok"'
expect "lossguard --help" "$("$prefix/bin/lossguard" --help)" 'replay'
kill "$server"
wait "$server" || true
trap - EXIT
