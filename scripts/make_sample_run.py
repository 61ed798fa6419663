#!/usr/bin/env python3
"""Writes schema/examples/sample-run.ndjson: a synthetic example of wire format v1.

Two runs with the same loss curve: `sample-correct` reports the token-normalised loss;
`sample-ga-bug` reports the sum of per-micro-batch mean losses over ga_steps=8 without dividing
(the Axolotl pattern), i.e. about 8x its ref_loss. The numbers are generated, not trained: the
demo trainer of the collector produces real traces. Deterministic (fixed seed).
"""
import json
import math
import random
import sys

STEPS, GA, MBS, VOCAB, SEQ = 300, 8, 1, 32000, 512


def records(run, buggy, rng):
    for step in range(STEPS):
        base = 3.2 + (math.log(VOCAB) - 3.2) * math.exp(-step / 40.0)
        micro = []
        for _ in range(GA):
            tokens = rng.randint(SEQ // 4, SEQ)  # padded sequences: label tokens vary per micro-batch
            loss = base + rng.gauss(0.0, 0.08)
            micro.append({"loss": round(loss, 6), "tokens": tokens, "loss_sum": round(loss * tokens, 4)})
        total_tokens = sum(m["tokens"] for m in micro)
        ref_loss = sum(m["loss_sum"] for m in micro) / total_tokens
        reported = sum(m["loss"] for m in micro) if buggy else ref_loss
        lr = 3e-4 * min(1.0, (step + 1) / 30) * 0.5 * (1 + math.cos(math.pi * step / STEPS))
        yield {
            "run": run, "step": step, "rank": 0, "world_size": 1, "ga_steps": GA, "micro_batch_size": MBS,
            "loss": round(reported, 6), "ref_loss": round(ref_loss, 6),
            "grad_norm": round(8.0 * math.exp(-step / 25.0) + 0.6 + abs(rng.gauss(0, 0.05)), 6),
            "tokens": total_tokens, "vocab_size": VOCAB, "lr": lr, "micro": micro, "nonfinite_grads": 0,
            "time": 1795000000.0 + step * 0.5,
        }


def main():
    rng = random.Random(20261123)
    out = sys.stdout
    for run, buggy in (("sample-correct", False), ("sample-ga-bug", True)):
        for record in records(run, buggy, rng):
            out.write(json.dumps(record, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
