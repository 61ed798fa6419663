#!/usr/bin/env bash
# The main job: installs what is missing, builds the server, CLI and demo trainer (Release), starts
# the server on its default SQLite database, trains three small GPTs with the collector attached
# (micro_batch 8 / GA 1 and micro_batch 1 / GA 8 with the correct loss, and micro_batch 1 / GA 8
# with the GA bug: micro-batch means summed without dividing), trains a fourth with the GA bug from
# Python (the lossguard package, collector/python), and prints what the server holds.
# Interactive: keeps serving until Ctrl-C. Non-interactive (CI, pipes): stops the server at the end.
#   LOSSGUARD_PORT=8080   port to listen on (127.0.0.1)
#   LOSSGUARD_DB=./lossguard.db
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
build_dir=build-release
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DLOSSGUARD_BUILD_TESTS=OFF \
      -DLOSSGUARD_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target lossguard-server lossguard lossguard_web demo_trainer lossguard_python

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

steps=${LOSSGUARD_DEMO_STEPS:-150}
trainer="$build_dir/collector/demo_trainer"
"$trainer" --server "$url" --steps "$steps" --run correct-mb8-ga1 --micro-batch-size 8 --ga-steps 1
"$trainer" --server "$url" --steps "$steps" --run correct-mb1-ga8 --micro-batch-size 1 --ga-steps 8
"$trainer" --server "$url" --steps "$steps" --run bug-mb1-ga8 --micro-batch-size 1 --ga-steps 8 --loss sum-no-ga-div
# The same bug from Python: the interpreter that imports Debian's torch (the first python3 on PATH
# may be another one).
for python in "${LOSSGUARD_PYTHON:-}" python3 /usr/bin/python3; do
  [[ -n "$python" ]] && "$python" -c "import torch" 2>/dev/null && break
done
PYTHONPATH="$build_dir/python" "$python" collector/python/examples/demo_trainer.py --server "$url" \
  --steps "$steps" --run py-bug-mb1-ga8 --micro-batch-size 1 --ga-steps 8 --loss sum-no-ga-div

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
echo "== the same sequences split two ways give the same training (GET /api/v1/runs/RUN/steps)"
python3 - "$url" <<'PY'
import json, sys, urllib.request
def steps(run):
    return json.load(urllib.request.urlopen(f"{sys.argv[1]}/api/v1/runs/{run}/steps"))["steps"]
a, b = steps("correct-mb8-ga1"), steps("correct-mb1-ga8")
print(f"{'STEP':>5}  {'loss mb8/GA1':>13} {'loss mb1/GA8':>13}  {'grad_norm mb8/GA1':>18} {'grad_norm mb1/GA8':>18}")
for i in [0, 1, 2, 10, 50, len(a) - 1]:
    if i < len(a):
        print(f"{a[i]['step']:>5}  {a[i]['loss']:>13.6f} {b[i]['loss']:>13.6f}  {a[i]['grad_norm']:>18.6f} {b[i]['grad_norm']:>18.6f}")
worst = max(abs(x["loss"] - y["loss"]) / x["loss"] for x, y in zip(a, b))
print(f"largest relative loss difference over {len(a)} steps: {worst:.1e}")
PY
echo "== alerts (lossguard alerts)"
"$build_dir/cli/lossguard" alerts --server "$url"
echo "== dashboard: $url/ (compare: $url/#/compare/correct-mb8-ga1/bug-mb1-ga8), Prometheus metrics: $url/metrics"

if [[ -t 0 && -t 1 ]]; then
  echo "== serving on $url until Ctrl-C"
  wait "$server"
fi
