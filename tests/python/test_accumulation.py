"""Token counting over the accumulation window and across gloo ranks, from Python: the reference
loss and the gradients do not depend on how the same sequences are split."""

import os

import pytest
import torch
import torch.multiprocessing as mp

import lossguard
import tiny_lm


def test_micro_batch_8_ga_1_equals_micro_batch_1_ga_8():
    ids, labels = tiny_lm.sequences()
    ref_a, grads_a, window_a = tiny_lm.train_step(tiny_lm.model(), ids, labels, 8)
    ref_b, grads_b, window_b = tiny_lm.train_step(tiny_lm.model(), ids, labels, 1)
    assert window_a.ga_steps == 1 and window_b.ga_steps == 8
    assert window_a.num_items == window_b.num_items == int((labels[:, 1:] != -100).sum())
    assert ref_a == pytest.approx(ref_b, rel=1e-6)
    torch.testing.assert_close(grads_a, grads_b, rtol=1e-5, atol=1e-7)
    # The mean of per-micro-batch means (transformers before its fix) differs at this split.
    mean_of_means = sum(mb["loss"] for mb in window_b.micro_batches()) / 8
    assert abs(mean_of_means - ref_b) > 1e-3


def test_reference_loss_is_the_token_mean_of_the_step():
    ids, labels = tiny_lm.sequences()
    net = tiny_lm.model()
    ref, _, window = tiny_lm.train_step(net, ids, labels, 3)
    with torch.no_grad():
        expected = lossguard.causal_lm_loss(net(ids), labels).item()
    assert ref == pytest.approx(expected, rel=1e-6)
    micro = window.micro_batches()
    assert [m["tokens"] for m in micro] == [
        int((y[:, 1:] != -100).sum()) for y in labels.split(3)]
    assert sum(m["loss_sum"] for m in micro) / window.num_items == pytest.approx(ref, rel=1e-6)


def test_count_label_tokens_and_num_items_make_accumulated_losses_the_step_mean():
    ids, labels = tiny_lm.sequences()
    net = tiny_lm.model()
    chunks = list(zip(ids.split(2), labels.split(2)))
    num_items = lossguard.count_label_tokens([y for _, y in chunks])
    total = sum(lossguard.causal_lm_loss(net(x), y, num_items=num_items) for x, y in chunks)
    assert total.item() == pytest.approx(lossguard.causal_lm_loss(net(ids), labels).item(), rel=1e-6)
    unshifted = lossguard.count_label_tokens([labels], label_count="unshifted")
    assert unshifted == int((labels != -100).sum()) and unshifted == num_items + 8


def test_a_window_without_labels_gives_zero_loss_and_zero_gradients():
    ids, labels = tiny_lm.sequences()
    labels.fill_(-100)
    ref, grads, window = tiny_lm.train_step(tiny_lm.model(), ids, labels, 4)
    assert ref == 0.0 and window.num_items == 0
    assert torch.isfinite(grads).all() and grads.abs().sum() == 0


def test_bad_windows_raise_clear_errors():
    ids, labels = tiny_lm.sequences()
    with pytest.raises(ValueError, match="at least one micro-batch"):
        lossguard.AccumulationWindow([])
    with pytest.raises(TypeError, match="list of"):
        lossguard.AccumulationWindow(labels)
    with pytest.raises(TypeError, match="labels must be integers"):
        lossguard.AccumulationWindow([labels.float()])
    with pytest.raises(ValueError, match="not initialised"):
        lossguard.AccumulationWindow([labels], group=object())
    window = lossguard.AccumulationWindow([labels, labels])
    with pytest.raises(ValueError, match="in order"):
        window.loss(1, tiny_lm.model()(ids))
    with pytest.raises(ValueError, match=r"before loss\(\) or linear_loss\(\)"):
        window.reference_loss()


def test_two_gloo_processes_equal_one_process_on_the_full_batch(tmp_path):
    ids, labels = tiny_lm.sequences()
    ref, grads, window = tiny_lm.train_step(tiny_lm.model(), ids, labels, 8)
    out = str(tmp_path / "result")
    mp.spawn(tiny_lm.gloo_worker, args=(2, str(tmp_path / "rendezvous"), out), nprocs=2, join=True)
    results = [torch.load(f"{out}.{rank}") for rank in range(2)]
    for r in results:
        assert r["world"] == 2
        assert r["num_items"] == window.num_items  # the global count of the step
        assert r["counted"] == window.num_items
        assert r["ref"] == pytest.approx(ref, rel=1e-6)
        torch.testing.assert_close(r["grads"], grads, rtol=1e-5, atol=1e-7)
    assert sum(r["local"] for r in results) == window.num_items
    assert results[0]["local"] != results[1]["local"]  # the ranks' halves differ in tokens
