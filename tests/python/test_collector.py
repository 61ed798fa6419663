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
