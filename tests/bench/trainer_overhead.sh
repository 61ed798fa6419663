#!/usr/bin/env bash
# Demo-trainer step time with the collector attached and the server down (records spooled to disk)
# against no collector at all: alternating runs, median ms/step of each, and the ratio.
#   tests/bench/trainer_overhead.sh [build-dir] [repeats] [steps]
set -euo pipefail
build=${1:-build}
repeats=${2:-5}
steps=${3:-120}
trainer="$build/collector/demo_trainer"
spool=$(mktemp -d)
trap 'rm -rf "$spool"' EXIT
ms() { "$trainer" --quiet --steps "$steps" "$@" | sed -n 's/.*: \([0-9.]*\) ms\/step$/\1/p'; }
with=() without=()
for i in $(seq "$repeats"); do
  without+=("$(ms --run base --no-collector)")
  # Port 1 on loopback: nothing listens, every delivery attempt fails, records go to the spool.
  with+=("$(ms --run attached --server http://127.0.0.1:1 --spool "$spool/spool-$i.ndjson" --flush-timeout-s 0)")
done
python3 - "${without[*]}" "${with[*]}" <<'PY'
import statistics, sys
base = [float(x) for x in sys.argv[1].split()]
attached = [float(x) for x in sys.argv[2].split()]
b, a = statistics.median(base), statistics.median(attached)
print(f"no collector:                          median {b:.3f} ms/step  {base}")
print(f"collector attached, server down:       median {a:.3f} ms/step  {attached}")
print(f"overhead: {100 * (a / b - 1):+.2f}%")
PY
