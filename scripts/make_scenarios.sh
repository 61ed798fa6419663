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

# A sparse variant: what a trainer that logs every N steps sends (Hugging Face logging_steps): one
# record per interval from rank 0, the loss averaged over the interval, grad_norm and lr of the
# logging step, no token counts or micro-batch data; vocab_size kept (`lossguard import
# --vocab-size`).
sparse() {
  local name=$1 every=$2
  if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then return; fi
  /usr/bin/python3 - "$out/$name.ndjson" "$out/$name.every$every.ndjson" "$every" <<'PY'
import json, math, sys
every = int(sys.argv[3])
keep = {"run", "step", "rank", "world_size", "grad_norm", "lr", "ga_steps", "micro_batch_size",
        "vocab_size"}
def number(v):
    return float(v) if not isinstance(v, str) else float(v.replace("Infinity", "inf"))
records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
records = [r for r in records if r["rank"] == 0]
first = records[0]["step"]
with open(sys.argv[2], "w") as dst:
    losses = []
    for r in records:
        losses.append(number(r["loss"]))
        if (r["step"] - first + 1) % every:
            continue
        out = {k: v for k, v in r.items() if k in keep}
        out["run"] += ".every%d" % every
        mean = sum(losses) / len(losses)
        out["loss"] = mean if math.isfinite(mean) else ("NaN" if math.isnan(mean) else "Infinity")
        losses = []
        dst.write(json.dumps(out, sort_keys=True, separators=(",", ":")) + "\n")
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
# What real training looks like beyond 300 steps: 2,000-step runs with warm-up and
# cosine decay, micro_batch 1 with clipping, fine-tuning from a trained checkpoint, 4 gloo ranks,
# a rank that keeps its local gradients, and sparse logging of some of them.
model="$tmp/trained.pt"
scenario long-healthy-mb4-ga2 --micro-batch-size 4 --ga-steps 2 --steps 2000 --warmup-steps 100 --cosine --seed 31 --save-model "$model"
scenario long-healthy-mb1-clip --micro-batch-size 1 --ga-steps 1 --steps 2000 --warmup-steps 100 --cosine --clip 1 --seed 32
scenario long-bug-lr-blowup --micro-batch-size 4 --ga-steps 1 --steps 2000 --warmup-steps 100 --cosine --lr-spike-at 1200 --lr-spike-factor 100 --seed 33
scenario long-bug-sum-no-ga-div --loss sum-no-ga-div --micro-batch-size 2 --ga-steps 4 --steps 2000 --warmup-steps 100 --cosine --seed 38
if [[ -f "$model" ]]; then
  scenario ft-healthy --init-model "$model" --micro-batch-size 2 --ga-steps 4 --steps 300 --lr 3e-4 --seed 34
  scenario ft-bug-sum-no-ga-div --init-model "$model" --loss sum-no-ga-div --micro-batch-size 1 --ga-steps 8 --steps 300 --lr 3e-4 --seed 35
fi
scenario ws4-healthy --micro-batch-size 2 --ga-steps 1 --world-size 4 --steps 300 --seed 36
scenario ws4-bug-skip-all-reduce --micro-batch-size 2 --ga-steps 1 --world-size 4 --steps 300 --skip-all-reduce-rank 2 --skip-all-reduce-from 150 --seed 37
for every in 10 100; do
  sparse long-healthy-mb4-ga2 $every
  sparse long-healthy-mb1-clip $every
  sparse long-bug-lr-blowup $every
  sparse long-bug-sum-no-ga-div $every
done
sparse bug-sum-no-ga-div 10
sparse ft-bug-sum-no-ga-div 10
sparse ws4-healthy 10

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
# Held out for the detectors' thresholds (severity, noise, the ln V bound, sparse logs, ranks): made
# after they were fixed on the runs above, never used to tune them.
heldout_model="$tmp/heldout-trained.pt"
scenario heldout-long-healthy-mb2-ga4 --micro-batch-size 2 --ga-steps 4 --steps 2000 --warmup-steps 200 --cosine --lr 2e-3 --seed 41 --save-model "$heldout_model"
scenario heldout-long-healthy-mb1-ga2-clip --micro-batch-size 1 --ga-steps 2 --steps 1500 --warmup-steps 50 --cosine --clip 0.5 --seed 42
scenario heldout-long-bug-lr-blowup --micro-batch-size 2 --ga-steps 2 --steps 1500 --warmup-steps 100 --cosine --lr-spike-at 900 --lr-spike-factor 50 --seed 43
scenario heldout-ws4-bug-skip-all-reduce --micro-batch-size 1 --ga-steps 2 --world-size 4 --steps 200 --skip-all-reduce-rank 1 --skip-all-reduce-from 80 --seed 44
if [[ -f "$heldout_model" ]]; then
  scenario heldout-ft-healthy --init-model "$heldout_model" --micro-batch-size 4 --ga-steps 2 --steps 300 --lr 2e-4 --seed 45
  scenario heldout-ft-bug-sum-no-ga-div --init-model "$heldout_model" --loss sum-no-ga-div --micro-batch-size 2 --ga-steps 4 --steps 300 --lr 2e-4 --seed 46
fi
for every in 10 100; do
  sparse heldout-long-healthy-mb2-ga4 $every
  sparse heldout-long-bug-lr-blowup $every
done
sparse heldout-long-healthy-mb1-ga2-clip 10
sparse heldout-bug-sum-no-ga-div 10
# Held out for the sparse-log loss-spike baseline, made after that fix (the first held-out set
# showed the miss it fixes).
scenario heldout-long-healthy-mb4-ga1-b --micro-batch-size 4 --ga-steps 1 --steps 1200 --warmup-steps 100 --cosine --seed 52
scenario heldout-long-bug-lr-blowup-b --micro-batch-size 4 --ga-steps 1 --steps 1200 --warmup-steps 100 --cosine --lr-spike-at 700 --lr-spike-factor 30 --seed 51
for every in 10 100; do
  sparse heldout-long-healthy-mb4-ga1-b $every
  sparse heldout-long-bug-lr-blowup-b $every
done
ls "$out"/*.ndjson | wc -l
