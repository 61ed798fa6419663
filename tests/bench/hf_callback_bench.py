"""What LossguardCallback costs a Hugging Face Trainer: the tiny Llama of tests/python/hf_tiny.py
trained with and without the callback in alternating runs (the same seed, data and steps), with
the callback streaming to a real lossguard server; prints each pair's median step times and the
median of their ratios. Also times `import lossguard` in a fresh interpreter.

    .venv/bin/python tests/bench/hf_callback_bench.py --server-bin build/server/lossguard-server \\
        [--pairs 5] [--steps 60] [--batch 8] [--ga 1] [--seq 128] [--threads N]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import hf_tiny  # noqa: E402
from transformers import Trainer, TrainerCallback  # noqa: E402

from lossguard.integrations.hf import LossguardCallback  # noqa: E402


class TimedCallback(LossguardCallback):
    """LossguardCallback that also adds up the time spent in its own code: the forward hook,
    on_step_end (the step's collective and read) and on_log (the hand-off to the collector)."""

    spent = 0.0

    def _timed(self, method, *args, **kwargs):
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            self.spent += time.perf_counter() - started

    def _on_model_forward(self, *args, **kwargs):
        return self._timed(super()._on_model_forward, *args, **kwargs)

    def on_step_end(self, *args, **kwargs):
        return self._timed(super().on_step_end, *args, **kwargs)

    def on_log(self, *args, **kwargs):
        return self._timed(super().on_log, *args, **kwargs)


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step, from on_step_begin to on_step_end."""

    def __init__(self):
        self.times, self._start = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def start_server(binary: str, db: str):
    process = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--db", db],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        if "listening on" in line:
            return process, "http://127.0.0.1:" + line.rsplit(":", 1)[1].strip()
    raise RuntimeError("lossguard-server did not start")


def median_step_seconds(args, tokenizer, examples, out_dir, callback) -> float:
    timer = StepTimer()
    callbacks = [callback, timer] if callback else [timer]
    trainer = Trainer(model=hf_tiny.llama(seed=0),
                      args=hf_tiny.training_args(out_dir, batch=args.batch, ga=args.ga,
                                                 steps=args.steps),
                      train_dataset=examples, callbacks=callbacks,
                      data_collator=hf_tiny.PadCollator(tokenizer.pad_token_id))
    trainer.train()
    return statistics.median(timer.times[5:])  # past the first steps' warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-bin", required=True)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--ga", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)

    probe = ("import time, torch; started = time.perf_counter(); import lossguard; "
             "print(time.perf_counter() - started)")
    imports = [float(subprocess.run([sys.executable, "-c", probe], check=True, text=True,
                                    capture_output=True).stdout) for _ in range(5)]
    print(f"import lossguard after torch: median of 5 fresh interpreters "
          f"{statistics.median(imports) * 1e3:.1f} ms")

    tokenizer = hf_tiny.make_tokenizer()
    count = args.steps * args.batch * args.ga
    examples = hf_tiny.lm_examples(hf_tiny.sequences(tokenizer, count, args.seq // 2, args.seq,
                                                     seed=0))
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_server(args.server_bin, os.path.join(tmp, "bench.db"))
        try:
            ratios, own, plains = [], [], []
            for pair in range(args.pairs):
                plain = median_step_seconds(args, tokenizer, examples, os.path.join(tmp, "plain"),
                                            None)
                plains.append(plain)
                callback = TimedCallback(url, f"bench-{pair}", spool_dir="")
                watched = median_step_seconds(args, tokenizer, examples,
                                              os.path.join(tmp, "watched"), callback)
                ratios.append(watched / plain)
                own.append(callback.spent / args.steps)
                print(f"pair {pair}: without {plain * 1e3:.2f} ms/step, with the callback "
                      f"{watched * 1e3:.2f} ms/step, ratio {watched / plain:.4f}; in the "
                      f"callback's own code {own[-1] * 1e3:.3f} ms/step")
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"median ratio over {args.pairs} pairs (batch {args.batch}, GA {args.ga}, sequences of "
          f"{args.seq // 2}-{args.seq} tokens, vocab {hf_tiny.VOCAB_SIZE}): "
          f"{statistics.median(ratios):.4f}; the callback's own code "
          f"{statistics.median(own) * 1e3:.3f} ms/step = "
          f"{statistics.median(own) / statistics.median(plains) * 100:.2f}% of the step")


if __name__ == "__main__":
    main()
