#!/usr/bin/env bash
# Regenerates the analyzers' scenario corpus (tests/scenarios/*.ndjson) from real training runs of
# the demo trainer (collector/examples/demo_trainer/): healthy runs and every bug pattern. Each
# trace is also written in a "minimal" variant holding only what a trainer without the collector
# sends (loss, grad_norm, tokens, ga_steps, micro_batch_size, vocab_size), so that detection
# without reference data is measured too. Ground truth lives in tests/scenarios/manifest.json.
#
# usage: scripts/make_scenarios.sh BUILD_DIR   (takes about 5 minutes on 2 cores)
#        ONLY="bug-nan bug-bad-data" scripts/make_scenarios.sh BUILD_DIR   (just those)
set -euo pipefail
build=${1:?usage: make_scenarios.sh BUILD_DIR}
trainer="$build/collector/demo_trainer"
out="$(cd "$(dirname "$0")/.." && pwd)/tests/scenarios"
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

scenario() {
  local name=$1
  shift
  if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then return; fi
  echo "== $name: $*"
  "$trainer" --run "$name" --quiet --out "$tmp/$name" "$@"
  if [[ -f "$tmp/$name" ]]; then
    cp "$tmp/$name" "$out/$name.ndjson"
  else  # one file per rank: merge them in (step, rank) order, as a server would receive them
    /usr/bin/python3 - "$tmp/$name" "$out/$name.ndjson" <<'PY'
import glob, json, sys
records = []
for path in sorted(glob.glob(sys.argv[1] + ".rank*")):
    with open(path) as f:
        records += [line for line in f if line.strip()]
records.sort(key=lambda line: (json.loads(line)["step"], json.loads(line)["rank"]))
open(sys.argv[2], "w").writelines(records)
PY
  fi
  # The minimal variant: what a trainer sends without the collector.
  /usr/bin/python3 - "$out/$name.ndjson" "$out/$name.minimal.ndjson" <<'PY'
import json, sys
keep = {"run", "step", "rank", "world_size", "loss", "grad_norm", "tokens", "ga_steps",
        "micro_batch_size", "vocab_size"}
with open(sys.argv[1]) as src, open(sys.argv[2], "w") as dst:
    for line in src:
        record = {k: v for k, v in json.loads(line).items() if k in keep}
        record["run"] += ".minimal"
        dst.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
PY
}

# Healthy runs: nothing of warning severity or above may fire.
scenario healthy-mb8-ga1 --micro-batch-size 8 --ga-steps 1 --steps 150 --seed 1
scenario healthy-mb1-ga8 --micro-batch-size 1 --ga-steps 8 --steps 150 --seed 1
scenario healthy-mb2-ga2-ws2 --micro-batch-size 2 --ga-steps 2 --world-size 2 --steps 150 --seed 2
scenario healthy-tiny-noisy --micro-batch-size 1 --ga-steps 1 --steps 300 --seed 3
scenario healthy-warmup --micro-batch-size 4 --ga-steps 2 --steps 150 --warmup-steps 40 --lr 6e-3 --seed 4
scenario healthy-ga-change --micro-batch-size 2 --ga-steps 2 --ga-change-at 75 --ga-change-to 8 --steps 150 --seed 5

# Bug patterns.
scenario bug-sum-no-ga-div --loss sum-no-ga-div --micro-batch-size 1 --ga-steps 8 --steps 100 --seed 6
scenario bug-sum-no-ga-div-ws2 --loss sum-no-ga-div --micro-batch-size 2 --ga-steps 4 --world-size 2 --steps 100 --seed 7
scenario bug-mean-of-means --loss mean-of-means --micro-batch-size 1 --ga-steps 8 --steps 150 --seed 8
scenario bug-per-sequence --loss per-sequence --micro-batch-size 4 --ga-steps 2 --steps 100 --seed 9
scenario bug-ga-change --loss sum-no-ga-div --micro-batch-size 2 --ga-steps 1 --ga-change-at 75 --ga-change-to 8 --steps 150 --seed 10
scenario bug-lr-spike --micro-batch-size 8 --ga-steps 1 --steps 150 --lr-spike-at 80 --lr-spike-factor 300 --seed 11
scenario bug-nan --micro-batch-size 4 --ga-steps 2 --steps 100 --nan-at 60 --seed 12
scenario bug-bad-data --micro-batch-size 8 --ga-steps 1 --steps 150 --bad-data-at 100 --seed 14
scenario bug-zero-grad --micro-batch-size 4 --ga-steps 2 --steps 120 --detach-loss-at 70 --seed 13
# Held out: made after the thresholds were set on the runs above, never used to tune them.
scenario heldout-healthy-mb4-ga4 --micro-batch-size 4 --ga-steps 4 --steps 150 --seed 21
scenario heldout-healthy-high-lr --micro-batch-size 2 --ga-steps 1 --steps 200 --lr 1e-2 --seed 22
scenario heldout-healthy-mb1-ga4-ws2 --micro-batch-size 1 --ga-steps 4 --world-size 2 --steps 120 --seed 23
scenario heldout-healthy-tiny --micro-batch-size 1 --ga-steps 2 --steps 300 --warmup-steps 30 --seed 24
scenario heldout-bug-sum-no-ga-div --loss sum-no-ga-div --micro-batch-size 2 --ga-steps 4 --steps 100 --seed 25
scenario heldout-bug-mean-of-means --loss mean-of-means --micro-batch-size 2 --ga-steps 4 --steps 150 --seed 26
scenario heldout-bug-lr-spike --micro-batch-size 4 --ga-steps 2 --steps 120 --lr-spike-at 60 --lr-spike-factor 100 --seed 27
scenario heldout-bug-zero-grad --micro-batch-size 2 --ga-steps 2 --steps 100 --detach-loss-at 40 --seed 28
scenario heldout-bug-bad-data --micro-batch-size 4 --ga-steps 2 --steps 150 --bad-data-at 90 --seed 29
ls "$out"/*.ndjson | wc -l
