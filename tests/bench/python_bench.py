#!/usr/bin/env python3
"""Benchmarks of the Python package (figures in the README):

  record_step  time per Collector.record_step call, server down (records go to the spool):
               p50 / p99 / max over many calls
  loss         causal_lm_loss forward + backward from Python against the same C++ call timed in C++
               (lossguard._C._cpp_loss_seconds), alternating, at N tokens x V vocabulary
  demo         the Python demo trainer's ms/step with the collector attached and the server down
               against no collector, alternating runs (subprocesses), medians and the ratio

  PYTHONPATH=build/python /usr/bin/python3 tests/bench/python_bench.py [--part P] [--smoke]

--smoke runs each part tiny (ctest's bench label runs it that way to keep it from rotting; it
asserts nothing about speed).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import lossguard
from lossguard import _C

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "collector", "python", "examples", "demo_trainer.py")
DEAD_SERVER = "http://127.0.0.1:1"  # nothing listens: every delivery fails, records are spooled


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def bench_record_step(calls: int, paced_calls: int) -> None:
    """Back to back (a producer far faster than any trainer: the sender thread, spooling every
    record, competes for the two cores) and paced (200 us of busy 'training' between calls, still
    5,000 steps/s). The baseline, timed the same way: json.dumps of the same record in pure Python
    (what the machine's interrupts and the interpreter do to a call of a few microseconds)."""
    micro = [{"loss": 2.5, "tokens": 512, "loss_sum": 1280.0} for _ in range(8)]
    shapes = {"small (loss, grad_norm, lr, tokens)": {},
              "with ref_loss and 8 micro-batches": {"micro": micro, "ref_loss": 2.5}}
    clock = time.perf_counter_ns
    with tempfile.TemporaryDirectory() as spool:
        for pace_us, n in [(0, calls), (200, paced_calls)]:
            for name, extra in shapes.items():
                collector = lossguard.Collector(DEAD_SERVER, f"bench-{pace_us}-{len(extra)}",
                                                spool_dir=spool, drain_timeout=0)
                timings = []
                for step in range(n):
                    start = clock()
                    collector.record_step(step, 2.5, grad_norm=1.25, lr=3e-4, tokens=4096, **extra)
                    end = clock()
                    timings.append(end - start)
                    while clock() - end < pace_us * 1000:
                        pass
                stats = collector.stats()
                collector.close(timeout=0)
                baseline = []
                record = {"run": "bench", "step": 0, "loss": 2.5, "grad_norm": 1.25, "lr": 3e-4,
                          "tokens": 4096, **extra}
                for step in range(n):
                    start = clock()
                    record["step"] = step
                    json.dumps(record)
                    end = clock()
                    baseline.append(end - start)
                    while clock() - end < pace_us * 1000:
                        pass
                timings.sort()
                baseline.sort()
                mode = "back to back" if pace_us == 0 else f"every {pace_us} us"
                print(f"record_step, server down, {mode}, {name}: {n} calls  "
                      f"p50 {percentile(timings, 0.50) / 1000:.2f} us  "
                      f"p99 {percentile(timings, 0.99) / 1000:.2f} us  "
                      f"max {timings[-1] / 1000:.1f} us  (spooled {stats['spooled']}, "
                      f"dropped {stats['dropped']});  json.dumps baseline "
                      f"p50 {percentile(baseline, 0.50) / 1000:.2f} us  "
                      f"p99 {percentile(baseline, 0.99) / 1000:.2f} us")


def bench_loss(tokens: int, vocab: int, rounds: int, iterations: int) -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, tokens, vocab)
    labels = torch.randint(0, vocab, (1, tokens))
    leaf = logits.detach().requires_grad_(True)

    def python_seconds():
        start = time.perf_counter()
        for _ in range(iterations):
            lossguard.causal_lm_loss(leaf, labels).backward()
            leaf.grad = None
        return time.perf_counter() - start

    python_seconds(), _C._cpp_loss_seconds(logits, labels, 1)  # warm-up
    py, cpp = [], []
    for _ in range(rounds):
        py.append(python_seconds() / iterations)
        cpp.append(_C._cpp_loss_seconds(logits, labels, iterations) / iterations)
    p, c = statistics.median(py), statistics.median(cpp)
    print(f"causal_lm_loss forward+backward, N={tokens}, V={vocab}, {torch.get_num_threads()} "
          f"threads: Python {p * 1000:.1f} ms, C++ {c * 1000:.1f} ms (medians of {rounds}); "
          f"Python/C++ = {p / c:.3f}")


def demo_ms_per_step(steps: int, *flags) -> float:
    out = subprocess.run([sys.executable, DEMO, "--quiet", "--steps", str(steps), *flags],
                         capture_output=True, text=True, check=True)
    match = re.search(r"([0-9.]+) ms/step", out.stdout + out.stderr)
    if not match:
        raise RuntimeError(f"no ms/step in the demo's output: {out.stdout} {out.stderr}")
    return float(match.group(1))


def bench_demo(steps: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as spool:
        base, attached = [], []
        demo_ms_per_step(steps, "--run", "warm-up", "--no-collector")  # caches, CPU clocks
        for i in range(repeats):
            base.append(demo_ms_per_step(steps, "--run", "base", "--no-collector"))
            attached.append(demo_ms_per_step(steps, "--run", f"attached-{i}", "--server",
                                             DEAD_SERVER, "--spool-dir", spool,
                                             "--flush-timeout-s", "0"))
    b, a = statistics.median(base), statistics.median(attached)
    print(f"python demo, no collector:                    median {b:.3f} ms/step  {base}")
    print(f"python demo, collector attached, server down: median {a:.3f} ms/step  {attached}")
    print(f"overhead: {100 * (a / b - 1):+.2f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["record_step", "loss", "demo", "all"], default="all")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (ctest)")
    args = parser.parse_args()
    if args.part in ("record_step", "all"):
        bench_record_step(*((2_000, 500) if args.smoke else (200_000, 20_000)))
    if args.part in ("loss", "all"):
        if args.smoke:
            bench_loss(256, 1000, rounds=2, iterations=1)
        else:
            bench_loss(4096, 32000, rounds=7, iterations=3)
    if args.part in ("demo", "all"):
        if args.smoke:
            bench_demo(steps=3, repeats=1)
        else:
            bench_demo(steps=60, repeats=9)


if __name__ == "__main__":
    main()
