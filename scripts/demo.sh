#!/usr/bin/env bash
# The main job: installs what is missing, builds the server and CLI (Release), starts the server on
# its default SQLite database, replays the sample run, and prints what the server holds.
# Interactive: keeps serving until Ctrl-C. Non-interactive (CI, pipes): stops the server at the end.
#   LOSSGUARD_PORT=8080   port to listen on (127.0.0.1)
#   LOSSGUARD_DB=./lossguard.db
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
build_dir=build-release
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DLOSSGUARD_BUILD_TESTS=OFF \
      -DLOSSGUARD_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target lossguard-server lossguard

port=${LOSSGUARD_PORT:-8080}
db=${LOSSGUARD_DB:-./lossguard.db}
url="http://127.0.0.1:${port}"
log=$(mktemp)
"$build_dir/server/lossguard-server" --listen "127.0.0.1:${port}" --db "$db" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q "listening on" "$log" && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; echo "demo: the server did not start (is port $port in use? set LOSSGUARD_PORT)" >&2; exit 1; }
  sleep 0.1
done
grep -q "listening on" "$log" || { cat "$log" >&2; exit 1; }
echo "== lossguard-server on $url, database $db"

"$build_dir/server/lossguard" replay schema/examples/sample-run.ndjson --server "$url"

echo "== runs (GET /api/v1/runs)"
python3 - "$url" <<'PY'
import json, sys, urllib.request
runs = json.load(urllib.request.urlopen(sys.argv[1] + "/api/v1/runs"))["runs"]
print(f"{'RUN':<18}{'STEPS':>7}{'GA':>4}{'MBS':>5}{'LAST LOSS':>12}{'REF LOSS':>11}{'LOSS/REF':>10}")
for r in runs:
    last, cfg = r["last"], r["config"]
    ratio = last["loss"] / last["ref_loss"] if isinstance(last["ref_loss"], (int, float)) and last["ref_loss"] else float("nan")
    print(f"{r['run']:<18}{r['records']:>7}{cfg['ga_steps']:>4}{cfg['micro_batch_size']:>5}{last['loss']:>12.4f}{last['ref_loss']:>11.4f}{ratio:>10.2f}")
PY
echo "== downsampled series (GET /api/v1/runs/sample-ga-bug/steps?max_points=20)"
python3 - "$url" <<'PY'
import json, sys, urllib.request
d = json.load(urllib.request.urlopen(sys.argv[1] + "/api/v1/runs/sample-ga-bug/steps?max_points=20"))
r = d["ranks"][0]
print(f"bucket width {d['bucket_width']} steps; loss max per bucket:", [round(x, 2) for x in r["loss"]["max"]])
PY
echo "== alerts (lossguard alerts)"
"$build_dir/server/lossguard" alerts --server "$url"

if [[ -t 0 && -t 1 ]]; then
  echo "== serving on $url until Ctrl-C"
  wait "$server"
fi
