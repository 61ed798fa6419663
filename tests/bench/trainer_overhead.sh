#!/usr/bin/env bash
# Demo-trainer step time, alternating runs of two configurations, median ms/step of each and the
# ratio:
#   collector (the default): the collector attached with the server down (records spooled to disk)
#     against no collector at all;
#   loss-impl: the fused loss (LinearCrossEntropy from the hidden states) against the unfused one
#     (the head's logits, then CausalLmCrossEntropy), each also with its peak allocated memory;
#   guard: streaming to a real server (started here) with the guard on (judging every step, records
#     sent promptly, verdicts read) against the same without it.
#   tests/bench/trainer_overhead.sh [build-dir] [repeats] [steps] [collector|loss-impl|guard]
set -euo pipefail
build=${1:-build}
repeats=${2:-5}
steps=${3:-120}
mode=${4:-collector}
trainer="$build/collector/demo_trainer"
spool=$(mktemp -d)
trap 'rm -rf "$spool"' EXIT
case "$mode" in
  collector)
    names=("no collector" "collector attached, server down")
    # Port 1 on loopback: nothing listens, every delivery attempt fails, records go to the spool.
    config() {
      if [[ $1 == 0 ]]; then echo --run base --no-collector
      else echo --run attached --server http://127.0.0.1:1 --spool "$spool/spool-$2.ndjson" --flush-timeout-s 0
      fi
    } ;;
  loss-impl)
    names=("unfused loss" "fused loss")
    config() {
      local impl=unfused
      [[ $1 == 1 ]] && impl=fused
      echo --run "$impl" --spool-dir none --report-memory --loss-impl "$impl"
    } ;;
  guard)
    names=("streaming, no guard" "streaming, guard on")
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$build/server/lossguard-server" --db "$spool/bench.db" --listen "127.0.0.1:$port" 2>/dev/null &
    server_pid=$!
    trap 'kill $server_pid 2>/dev/null; rm -rf "$spool"' EXIT
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    config() {
      local common="--server http://127.0.0.1:$port --spool-dir none --run guard-$1-$2"
      if [[ $1 == 0 ]]; then echo "$common"
      else echo "$common --guard loss_scale_mismatch=stop,nonfinite=skip_step,grad_explosion=lower_lr,*=warn"
      fi
    } ;;
  *) echo "trainer_overhead.sh: mode must be collector, loss-impl or guard, not '$mode'" >&2; exit 2 ;;
esac
runs=("" "")
for i in $(seq "$repeats"); do
  for side in 0 1; do
    # shellcheck disable=SC2046 # config prints words meant to be split
    out=$("$trainer" --quiet --steps "$steps" $(config "$side" "$i"))
    ms=$(sed -n 's/.*: \([0-9.]*\) ms\/step$/\1/p' <<<"$out")
    peak=$(sed -n 's/.*peak allocated during training.*: \([0-9.]*\) MB$/\1/p' <<<"$out")
    runs[side]+="$ms/${peak:-0} "
  done
done
python3 - "${names[0]}" "${runs[0]}" "${names[1]}" "${runs[1]}" <<'PY'
import statistics, sys
sides = []
for name, runs in ((sys.argv[1], sys.argv[2]), (sys.argv[3], sys.argv[4])):
    pairs = [tuple(float(x) for x in run.split("/")) for run in runs.split()]
    ms = [p[0] for p in pairs]
    peak = max(p[1] for p in pairs)
    sides.append(statistics.median(ms))
    memory = f", peak allocated {peak:.2f} MB" if peak else ""
    print(f"{name + ':':38} median {sides[-1]:.3f} ms/step{memory}  {ms}")
print(f"{sys.argv[3]} vs {sys.argv[1]}: {100 * (sides[1] / sides[0] - 1):+.2f}%")
PY
