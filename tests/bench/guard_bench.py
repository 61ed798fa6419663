#!/usr/bin/env python3
"""What the guard saves, measured on the C++ demo trainer against a real lossguard server: for each
fault and policy, when the trainer acted (delay from the server's judgement to the action, in
steps and milliseconds), how many optimizer steps ran on a bad loss, and where the run ended.

    python3 tests/bench/guard_bench.py [--build build]

Faults: the GA bug (micro-batch means summed over GA 8, from step 0), an lr blow-up (x100 for 3
steps at step 150 of 300), a NaN loss at step 100. "Bad steps" are optimizer steps taken on a bad
loss: for the GA bug every step whose loss is off its ref_loss by more than 5% and was applied;
for the lr blow-up every step whose ref_loss is more than 1.5x the unbroken run's at the same
step; for the NaN every step with a non-finite loss or weights. Prints a Markdown table.
"""
import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(build: str, directory: str):
    port = free_port()
    process = subprocess.Popen(
        [os.path.join(build, "server", "lossguard-server"), "--db",
         os.path.join(directory, "bench.db"), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            return process, url
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the server did not start")


def train(build, directory, url, run, flags):
    out = os.path.join(directory, run + ".ndjson")
    result = subprocess.run(
        [os.path.join(build, "collector", "demo_trainer"), "--quiet", "--server", url, "--run",
         run, "--out", out, "--spool-dir", os.path.join(directory, "spool"),
         "--flush-timeout-s", "10", *flags], capture_output=True, text=True, timeout=1800)
    if result.returncode not in (0, 3):
        raise RuntimeError(f"{run}: exit {result.returncode}: {result.stderr[-2000:]}")
    with open(out) as f:
        return result.returncode, [json.loads(line) for line in f if line.strip()]


def number(value) -> float:
    return float("nan") if isinstance(value, str) else float(value)


def first_action(records):
    for r in records:
        if "guard" in r and r["guard"]["action"] != "warn":
            return r
    for r in records:
        if "guard" in r:
            return r
    return None


def delay(records, acted):
    """(steps, ms) from the step the server had judged through to the step acted at; a local
    verdict acts on the step it judged."""
    if acted is None:
        return None, None
    guard = acted["guard"]
    if guard["source"] == "local":
        return 0, 0.0
    judged = next(r for r in records if r["step"] == guard["seen_through"])
    return acted["step"] - judged["step"], 1000 * (acted["time"] - judged["time"])


def mean_tail(records, n=20):
    return sum(number(r["ref_loss"]) for r in records[-n:]) / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default="build")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lossguard-guard-bench-") as directory:
        server, url = start_server(args.build, directory)
        try:
            ga_bug = ["--micro-batch-size", "1", "--ga-steps", "8", "--loss", "sum-no-ga-div",
                      "--steps", "200"]
            for name, policy in [("warn", "loss_scale_mismatch=warn,local=off"),
                                 ("stop (server verdict)", "loss_scale_mismatch=stop,local=off"),
                                 ("stop (local fast path)", "loss_scale_mismatch=stop")]:
                code, records = train(args.build, directory, url, f"ga-{len(rows)}",
                                      ga_bug + ["--guard", policy])
                acted = first_action(records)
                steps, ms = delay(records, acted)
                applied = [r for r in records
                           if not ("guard" in r and r["guard"]["action"] == "stop")]
                bad = sum(1 for r in applied
                          if abs(number(r["loss"]) / number(r["ref_loss"]) - 1) > 0.05)
                rows.append(("GA bug", name, steps, ms, bad, f"exit {code} at step "
                             f"{records[-1]['step']}"))

            blow_up = ["--steps", "300", "--lr-spike-at", "150", "--lr-spike-factor", "100",
                       "--lr-spike-steps", "3", "--checkpoint-every", "20"]
            _, unbroken = train(args.build, directory, url, "lr-unbroken", ["--steps", "300"])
            base = {r["step"]: number(r["ref_loss"]) for r in unbroken}
            explosion = "grad_explosion:warning={0},loss_spike:warning={0}"
            for name, response in [("warn", "warn"), ("rollback", "rollback"),
                                   ("lower_lr x0.5", "lower_lr:0.5"),
                                   ("skip_step", "skip_step")]:
                code, records = train(args.build, directory, url, f"lr-{len(rows)}",
                                      blow_up + ["--guard", explosion.format(response),
                                                 "--checkpoint-dir",
                                                 os.path.join(directory, f"ckpt-{len(rows)}")])
                acted = first_action(records)
                steps, ms = delay(records, acted)
                bad = sum(1 for r in records if number(r["ref_loss"]) > 1.5 * base[r["step"]])
                end = mean_tail(records) / mean_tail(unbroken)
                actions = sum(1 for r in records if "guard" in r)
                rows.append(("lr x100 at step 150", name, steps, ms, bad,
                             f"final loss {end:.3f}x unbroken; {actions} action(s)"))

            for name, policy in [("warn", "nonfinite=warn"), ("skip_step", "nonfinite=skip_step")]:
                code, records = train(args.build, directory, url, f"nan-{len(rows)}",
                                      ["--steps", "200", "--nan-at", "100", "--guard", policy])
                acted = first_action(records)
                steps, ms = delay(records, acted)
                bad = sum(1 for r in records if not math.isfinite(number(r["loss"])))
                rows.append(("NaN loss at step 100", name, steps, ms, bad,
                             f"final loss {mean_tail(records):.3f}"))
        finally:
            server.terminate()
            server.wait(timeout=30)

    print("| fault | policy | delay (steps) | delay (ms) | bad steps | outcome |")
    print("|---|---|---|---|---|---|")
    for fault, policy, steps, ms, bad, outcome in rows:
        shown_steps = "-" if steps is None else str(steps)
        shown_ms = "-" if ms is None else f"{ms:.0f}"
        print(f"| {fault} | {policy} | {shown_steps} | {shown_ms} | {bad} | {outcome} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
