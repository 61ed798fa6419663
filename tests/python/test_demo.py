"""The Python demo trainer against the real server: the GA bug is found and explained, a correct
run raises nothing, and the same sequences split over micro-batches, GA steps and gloo ranks train
the same way."""

import os
import subprocess
import sys

import pytest

DEMO = os.environ.get("LOSSGUARD_PYTHON_DEMO", os.path.join(
    os.path.dirname(__file__), "..", "..", "collector", "python", "examples", "demo_trainer.py"))


def train(server, tmp_path, run, *flags):
    result = subprocess.run(
        [sys.executable, DEMO, "--server", server.url, "--run", run, "--quiet",
         "--spool-dir", str(tmp_path / "spool"), *flags],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_ga_bug_raises_loss_scale_mismatch_explained_by_ga_steps(server, tmp_path):
    run = train(server, tmp_path, "py-bug", "--steps", "20", "--micro-batch-size", "1",
                "--ga-steps", "8", "--loss", "sum-no-ga-div")
    # The collector's local check says so in the trainer's log, too.
    assert "ga_steps" in run.stderr
    alerts = [a for a in server.alerts("py-bug") if a["kind"] == "loss_scale_mismatch"]
    assert alerts, server.alerts("py-bug")
    assert alerts[0]["severity"] == "critical"
    assert alerts[0]["evidence"]["explained_by"] == "ga_steps"


def test_splits_of_the_same_sequences_train_the_same_and_stay_quiet(server, tmp_path):
    steps = "12"
    train(server, tmp_path, "py-mb8", "--steps", steps, "--micro-batch-size", "8")
    train(server, tmp_path, "py-mb1-ga8", "--steps", steps, "--micro-batch-size", "1",
          "--ga-steps", "8")
    train(server, tmp_path, "py-ddp2", "--steps", steps, "--micro-batch-size", "2",
          "--ga-steps", "2", "--world-size", "2")
    runs = {run: server.steps(run) for run in ["py-mb8", "py-mb1-ga8", "py-ddp2"]}
    base = runs["py-mb8"]
    assert len(base) == 12
    assert len(runs["py-ddp2"]) == 24 and {r["rank"] for r in runs["py-ddp2"]} == {0, 1}
    for name, records in runs.items():
        for record in records:
            same = base[record["step"]]
            assert record["ref_loss"] == pytest.approx(same["ref_loss"], rel=1e-4), name
            assert record["loss"] == pytest.approx(record["ref_loss"], rel=1e-6), name
            assert record["grad_norm"] == pytest.approx(same["grad_norm"], rel=1e-3), name
        loud = [a for a in server.alerts(name) if a["severity"] in ("warning", "critical")]
        assert not loud, loud


def test_a_rank_that_keeps_its_local_gradients_is_named(server, tmp_path):
    # Three ranks, so that a majority tells which one diverged. Their records reach the server in
    # the batches of three independent senders: steps judged before a lagging rank's records came
    # miss it (the analyzer then waits longer), so the onset is step 5 or a little later.
    train(server, tmp_path, "py-skip", "--steps", "40", "--micro-batch-size", "2",
          "--world-size", "3", "--skip-all-reduce-rank", "1", "--skip-all-reduce-from", "5")
    alerts = [a for a in server.alerts("py-skip") if a["kind"] == "rank_divergence"]
    assert alerts, server.alerts("py-skip")
    assert alerts[0]["severity"] == "critical"
    assert 5 <= alerts[0]["first_step"] < 40
    assert alerts[0]["evidence"]["ranks"] == [1]


def test_fine_tuning_starts_from_the_saved_model(server, tmp_path):
    model = tmp_path / "trained.pt"
    train(server, tmp_path, "py-pretrain", "--steps", "30", "--save-model", str(model))
    assert model.is_file()
    train(server, tmp_path, "py-finetune", "--steps", "3", "--init-model", str(model),
          "--lr", "1e-5", "--seed", "1")
    pretrained, finetuned = server.steps("py-pretrain"), server.steps("py-finetune")
    # The fine-tuning run starts where pre-training ended, far below a fresh model's loss.
    assert finetuned[0]["loss"] < 0.8 * pretrained[0]["loss"]
    assert finetuned[0]["loss"] == pytest.approx(pretrained[-1]["loss"], rel=0.25)


def guarded(server, tmp_path, run, *flags):
    return subprocess.run(
        [sys.executable, DEMO, "--server", server.url, "--run", run, "--quiet",
         "--spool-dir", str(tmp_path / "spool"), *flags],
        capture_output=True, text=True, timeout=600)


def test_the_guard_stops_the_ga_bug_on_the_servers_verdict_and_warn_trains_on(server, tmp_path):
    ga_bug = ["--micro-batch-size", "1", "--ga-steps", "8", "--loss", "sum-no-ga-div"]
    stopped = guarded(server, tmp_path, "py-guard-stop", "--steps", "200", *ga_bug,
                      "--guard", "loss_scale_mismatch=stop,local=off",
                      "--checkpoint-dir", str(tmp_path / "ckpt"))
    import lossguard
    assert stopped.returncode == lossguard.STOP_EXIT_CODE, stopped.stdout + stopped.stderr
    assert "stopped by lossguard's guard at step" in stopped.stderr
    records = server.steps("py-guard-stop")
    last = records[-1]
    assert last["guard"]["action"] == "stop" and last["guard"]["source"] == "server"
    assert last["step"] - last["guard"]["seen_through"] <= 3
    assert len(records) < 30
    assert (tmp_path / "ckpt" / f"stopped-at-step-{last['step']}.pt").exists()
    [alert] = [a for a in server.alerts("py-guard-stop") if a["kind"] == "loss_scale_mismatch"]
    assert [a["action"] for a in alert["actions"]] == ["stop"]

    warned = guarded(server, tmp_path, "py-guard-warn", "--steps", "40", *ga_bug,
                     "--guard", "loss_scale_mismatch=warn")
    assert warned.returncode == 0, warned.stderr
    records = server.steps("py-guard-warn")
    assert len(records) == 40
    assert [r["guard"]["action"] for r in records if "guard" in r] == ["warn"]


def test_the_guard_skips_a_nan_step_without_the_server(tmp_path):
    result = subprocess.run(
        [sys.executable, DEMO, "--server", "http://127.0.0.1:1", "--run", "py-nan", "--quiet",
         "--spool-dir", str(tmp_path / "spool"), "--steps", "20", "--nan-at", "8",
         "--guard", "nonfinite=skip_step", "--flush-timeout-s", "1"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "critical nonfinite since step 8" in result.stderr
    assert "-> skip_step" in result.stderr
    assert "guard: 1 steps skipped" in result.stdout
