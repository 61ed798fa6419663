"""lossguard.Collector against the real server: delivery, outages, spool failures, bad records."""

import logging
import math
import os
import time

import pytest

import lossguard


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_records_reach_the_server_with_every_field(server, tmp_path):
    micro = [{"loss": 2.5, "tokens": 40, "loss_sum": 100.0}, {"loss": 2.0, "tokens": 10, "loss_sum": 20.0}]
    with lossguard.Collector(server.url, "py-fields", spool_dir=str(tmp_path), micro_batch_size=4,
                             ga_steps=2, vocab_size=96) as c:
        c.record_step(0, 2.4, grad_norm=1.5, lr=1e-3, ref_loss=2.4, tokens=50, micro=micro,
                      nonfinite_grads=0, my_note="kept")
        c.record_step(1, float("nan"), grad_norm=float("inf"))
    [first, second] = server.steps("py-fields")
    assert first["loss"] == 2.4 and first["grad_norm"] == 1.5 and first["lr"] == 1e-3
    assert first["ga_steps"] == 2 and first["micro_batch_size"] == 4 and first["vocab_size"] == 96
    assert first["micro"] == micro and first["tokens"] == 50 and first["my_note"] == "kept"
    assert first["rank"] == 0 and first["world_size"] == 1 and "time" in first
    assert second["loss"] == "NaN" and second["grad_norm"] == "Infinity"  # non-finite is data
    assert c.stats()["delivered"] == 2 and c.closed


def test_records_reach_an_https_server_verified_against_its_ca(tls_server, tmp_path, monkeypatch):
    assert tls_server.url.startswith("https://")
    with lossguard.Collector(tls_server.url, "py-tls", spool_dir=str(tmp_path / "a"),
                             ca_file=tls_server.ca_file) as c:
        for step in range(20):
            c.record_step(step, 2.0 - step / 100)
        assert c.flush(20.0)
    assert len(tls_server.steps("py-tls")) == 20
    # The CA from the environment, as a launcher would set it for every rank.
    monkeypatch.setenv("LOSSGUARD_CA_FILE", tls_server.ca_file)
    with lossguard.Collector(tls_server.url, "py-tls-env", spool_dir=str(tmp_path / "b")) as c:
        c.record_step(0, 2.0)
        assert c.flush(20.0)
    assert len(tls_server.steps("py-tls-env")) == 1
    # Without it the server is not trusted: nothing is delivered, the record waits in the spool.
    monkeypatch.delenv("LOSSGUARD_CA_FILE")
    c = lossguard.Collector(tls_server.url, "py-tls-untrusted", spool_dir=str(tmp_path / "c"),
                            drain_timeout=0.2)
    c.record_step(0, 2.0)
    assert not c.flush(2.0)
    assert c.stats()["delivered"] == 0
    c.close()


def test_a_window_fills_in_the_reference_data(server, tmp_path):
    import tiny_lm
    ids, labels = tiny_lm.sequences()
    ref, _, window = tiny_lm.train_step(tiny_lm.model(), ids, labels, 2)
    with lossguard.Collector(server.url, "py-window", spool_dir=str(tmp_path)) as c:
        c.record_step(0, ref * 4, window=window, grad_norm=1.0)
        with pytest.raises(ValueError, match="given both"):
            c.record_step(1, ref, window=window, ref_loss=ref)
    [record] = server.steps("py-window")
    assert record["ref_loss"] == pytest.approx(ref) and record["ga_steps"] == 4
    assert record["tokens"] == window.num_items and len(record["micro"]) == 4


def test_a_record_the_server_would_refuse_raises_at_the_call_with_the_reason(tmp_path):
    with lossguard.Collector(None, "py-bad", spool_dir="") as c:
        with pytest.raises(ValueError, match="step must be >= 0"):
            c.record_step(-1, 2.0)
        with pytest.raises(ValueError, match="ga_steps"):
            c.record_step(0, 2.0, ga_steps=0)
        with pytest.raises(TypeError, match="cannot send a object"):
            c.record_step(0, 2.0, grad_norm=object())
        with pytest.raises(ValueError, match="belongs to the collector"):
            c.record_step(0, 2.0, run="other")
        with pytest.raises(ValueError, match="64-bit"):
            c.record_step(0, 2.0, tokens=2**70)
        assert c.record_step(0, 2.0)  # the collector still works
    with pytest.raises(ValueError, match="run"):
        lossguard.Collector(None, "bad run name!")
    with pytest.raises(ValueError, match="closed"):
        c.record_step(1, 2.0)


def test_every_step_arrives_exactly_once_across_a_server_outage(server, tmp_path):
    c = lossguard.Collector(server.url, "py-outage", spool_dir=str(tmp_path / "spool"),
                            flush_interval=0.05)
    for step in range(100):
        c.record_step(step, 2.0 + step / 100, grad_norm=1.0)
    assert c.flush(30)
    server.stop()  # a real process, stopped mid-run
    started = time.perf_counter()
    for step in range(100, 300):
        assert c.record_step(step, 2.0, grad_norm=1.0)
    assert time.perf_counter() - started < 1.0  # never blocked on the dead server
    assert wait_for(lambda: c.stats()["spooled"] > 0)
    server.start()  # the same port and database
    assert c.close(60)
    steps = [r["step"] for r in server.steps("py-outage")]
    assert steps == list(range(300))  # each exactly once, in order
    stats = c.stats()
    assert stats["delivered"] >= 300 and stats["dropped"] == 0 and stats["failed_requests"] > 0


def test_an_unwritable_spool_does_not_stop_training_and_shows_in_the_stats(tmp_path, caplog):
    spool_dir = tmp_path / "spool"
    c = lossguard.Collector("http://127.0.0.1:9", "py-spool", spool_dir=str(spool_dir),
                            flush_interval=0.05, spool_retry_interval=0.2)
    spool = c.spool_path
    assert spool.startswith(str(spool_dir))
    # The spool's directory is replaced by a file: no spool can be written or reopened there.
    for entry in sorted(spool_dir.rglob("*"), reverse=True):
        entry.unlink() if entry.is_file() else entry.rmdir()
    spool_dir.rmdir()
    spool_dir.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="lossguard"):
        for step in range(500):
            assert c.record_step(step, 2.0) is True  # never raises, never blocks
        assert wait_for(lambda: c.stats()["spool_errors"] > 0)
        stats = c.stats()
        c.flush(0.1)
    assert stats["submitted"] == 500 and stats["delivered"] == 0
    assert any("spool" in r.getMessage() for r in caplog.records)
    c.close(0.1)


def test_a_dead_server_at_exit_leaves_the_records_in_the_spool_for_the_next_start(server, tmp_path):
    spool_dir = str(tmp_path / "spool")
    dead = lossguard.Collector("http://127.0.0.1:9", "py-resume", spool_dir=spool_dir,
                               drain_timeout=0.2)
    for step in range(50):
        dead.record_step(step, 2.0)
    assert dead.close(0.3) is False
    assert os.path.getsize(dead.spool_path) > 0
    # The restarted trainer (same run and rank) replays the spool first.
    with lossguard.Collector(server.url, "py-resume", spool_dir=spool_dir) as again:
        for step in range(50, 60):
            again.record_step(step, 2.0)
    assert [r["step"] for r in server.steps("py-resume")] == list(range(60))


@pytest.mark.parametrize("args, kwargs, error, message", [
    (("not a url", "r"), {}, ValueError, "URL must start with http://"),
    ((None, 5), {}, TypeError, "run must be a str"),
    ((None, "r"), {"queue_capacity": -1}, ValueError, "queue_capacity must be an int >= 1"),
    ((None, "r"), {"ga_steps": 0}, ValueError, "ga_steps must be an int >= 1"),
    ((None, "r"), {"flush_interval": float("nan")}, ValueError, "flush_interval must be a number"),
    ((None, "r"), {"drain_timeout": -1}, ValueError, "drain_timeout must be a number"),
    ((None, "r"), {"world_size": 0}, ValueError, "invalid collector option: world_size"),
    ((None, "r"), {"rank": -1}, ValueError, "invalid collector option: rank"),
])
def test_bad_collector_options_raise_before_training_starts(args, kwargs, error, message):
    with pytest.raises(error) as raised:
        lossguard.Collector(*args, spool_dir="", **kwargs)
    assert message in str(raised.value)


def test_hugging_face_log_names_are_taken_and_unknown_fields_are_warned_about_once(
        server, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="lossguard")
    with lossguard.Collector(server.url, "py-field-names", spool_dir=str(tmp_path)) as collector:
        for step in range(3):
            collector.record_step(step, 2.0, gradnorm=0.5, learning_rate=1e-3, epoch=0.1 * step,
                                  grad_norm=0.25)
        with pytest.raises(ValueError, match="'learning_rate' and 'lr' are the same field"):
            collector.record_step(3, 2.0, learning_rate=1e-3, lr=1e-3)
        assert collector.flush(10)
    records = server.steps("py-field-names")
    assert [r["lr"] for r in records] == [1e-3] * 3
    assert all("learning_rate" not in r and r["gradnorm"] == 0.5 for r in records)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["lossguard: 'gradnorm' is not a wire-format field: the server keeps it as "
                        "given, and no detector reads it (did you mean 'grad_norm'?)"]


def test_the_local_check_says_once_per_episode_not_per_step(tmp_path, caplog):
    # A mean of micro-batch means a little off the token mean, crossing the 1% tolerance back and
    # forth for 200 steps: one line.
    caplog.set_level(logging.WARNING, logger="lossguard")
    with lossguard.Collector(None, "py-local-check", spool_dir="") as collector:
        for step in range(200):
            ratio = 1.02 if step % 3 == 0 else 1.005
            collector.record_step(step, 2.0 * ratio, ref_loss=2.0, ga_steps=4)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert lines[0].startswith("lossguard: step 0: the reported loss 2.04 is 1.02x")


def test_a_loop_that_keeps_its_own_loss_is_monitored_through_observe(server, tmp_path):
    # The loop's own loss is the GA bug (micro-batch means summed over 4 micro-batches); the window
    # only observes the logits the loop already has. The server finds the bug from that.
    import torch
    import tiny_lm

    ids, labels = tiny_lm.sequences(n=4 * 12, t=12)
    net = tiny_lm.model()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    with lossguard.Collector(server.url, "py-observed-ga-bug", spool_dir=str(tmp_path),
                             micro_batch_size=1, vocab_size=23) as collector:
        for step in range(12):
            micro = list(zip(ids[4 * step:4 * step + 4].split(1), labels[4 * step:4 * step + 4].split(1)))
            window = lossguard.AccumulationWindow([y for _, y in micro])
            reported = 0.0
            for i, (x, y) in enumerate(micro):
                logits = net(x)
                loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 23),
                                                         y[:, 1:].reshape(-1))
                window.observe(i, logits)
                loss.backward()
                reported += loss.item()
            optimizer.step()
            optimizer.zero_grad()
            collector.record_step(step, reported, window=window)
        assert collector.flush(10)
    records = server.steps("py-observed-ga-bug")
    assert all(r["ref_loss"] * 3 < r["loss"] for r in records)
    [alert] = [a for a in server.alerts("py-observed-ga-bug") if a["severity"] == "critical"]
    assert alert["kind"] == "loss_scale_mismatch"
    assert alert["evidence"]["explained_by"] == "ga_steps"


def test_a_guard_policy_in_either_form_judges_the_step_and_marks_its_record(server, tmp_path):
    policy = {"nonfinite": "skip_step", "loss_scale_mismatch": "stop", "max_rollbacks": 1,
              "local": True}
    with lossguard.Collector(server.url, "py-guard", spool_dir=str(tmp_path), guard=policy) as c:
        healthy = c.guard_step(0, 2.0, ref_loss=2.0, grad_norm=1.0)
        assert healthy.action is None and healthy.step_optimizer and not healthy.stop
        c.record_step(0, 2.0, ref_loss=2.0, grad_norm=1.0)
        nan = c.guard_step(1, float("nan"), grad_norm=float("nan"), nonfinite_grads=3)
        assert nan.response == "skip_step" and not nan.step_optimizer
        assert nan.action["kind"] == "nonfinite" and nan.action["source"] == "local"
        c.record_step(1, float("nan"), grad_norm=float("nan"))
        assert c.lr_scale == 1.0
    records = server.steps("py-guard")
    assert "guard" not in records[0]
    assert records[1]["guard"]["action"] == "skip_step"
    [alert] = [a for a in server.alerts("py-guard") if a["kind"] == "nonfinite"]
    assert [a["action"] for a in alert["actions"]] == ["skip_step"]


def test_a_bad_guard_policy_is_refused_naming_the_entry(tmp_path):
    with pytest.raises(ValueError, match='unknown response "halt"'):
        lossguard.Collector(None, "py-bad-guard", spool_dir="", guard="nonfinite=halt")
    with pytest.raises(TypeError):
        lossguard.Collector(None, "py-bad-guard", spool_dir="", guard=["nonfinite=stop"])
    with lossguard.Collector(None, "py-no-guard", spool_dir="") as c:
        with pytest.raises(ValueError, match="no guard policy"):
            c.guard_step(0, 2.0)


def test_a_guard_policy_reads_from_toml(tmp_path):
    path = tmp_path / "guard.toml"
    path.write_text('[guard]\nloss_scale_mismatch = "stop"\n"grad_explosion:warning" = '
                    '"lower_lr:0.5"\nmax_rollbacks = 2\n')
    policy = lossguard.policy_from_toml(path)
    with lossguard.Collector(None, "py-toml-guard", spool_dir="", guard=policy) as c:
        assert c._c.guard_policy == ("loss_scale_mismatch=stop,grad_explosion:warning=lower_lr:0.5,"
                                     "max_rollbacks=2,max_lr_lowerings=3,max_consecutive_skips=10")
