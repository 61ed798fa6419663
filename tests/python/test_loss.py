"""lossguard.causal_lm_loss against torch's own cross entropy (float64), gradients included."""

import pytest
import torch
import torch.nn.functional as F

import lossguard


def reference(logits, labels, ignore_index=-100, reduction="mean", num_items=None):
    """torch's cross entropy on the shifted labels, in float64."""
    x = logits[:, :-1].reshape(-1, logits.size(-1)).double()
    y = labels[:, 1:].reshape(-1)
    per_token = F.cross_entropy(x, y, ignore_index=ignore_index, reduction="none")
    if reduction == "none":
        return per_token.view(labels.size(0), -1)
    total = per_token.sum()
    if num_items is not None:
        return total / num_items if num_items else total * 0
    if reduction == "sum":
        return total
    count = (y != ignore_index).sum()
    return total / count.clamp_min(1)


def batch(b=3, t=17, v=50, ignore_every=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[:, ::ignore_every] = -100
    return logits, labels


def values_and_grads(fn, logits, labels, **kw):
    x = logits.clone().requires_grad_(True)
    out = fn(x, labels, **kw)
    weights = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).view_as(out)
    (out * weights).sum().backward()  # a non-uniform upstream gradient for reduction none
    return out.detach().double(), x.grad.double()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_values_and_gradients_equal_torch_in_float64(reduction):
    logits, labels = batch()
    ours, our_grad = values_and_grads(lossguard.causal_lm_loss, logits, labels, reduction=reduction)
    ref, ref_grad = values_and_grads(reference, logits, labels, reduction=reduction)
    # Ours computes in float32; the reference in float64.
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(our_grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_num_items_normalises_the_sum_whatever_the_reduction():
    logits, labels = batch()
    for reduction in ["mean", "sum"]:
        ours = lossguard.causal_lm_loss(logits, labels, reduction=reduction, num_items=1000)
        torch.testing.assert_close(ours.double(), reference(logits, labels, num_items=1000),
                                   rtol=1e-5, atol=1e-6)
    # The Hugging Face Trainer passes num_items_in_batch as a tensor.
    as_tensor = lossguard.causal_lm_loss(logits, labels, num_items=torch.tensor(1000))
    torch.testing.assert_close(as_tensor.double(), reference(logits, labels, num_items=1000),
                               rtol=1e-5, atol=1e-6)


def test_reduction_none_with_long_runs_of_ignore_index_keeps_the_gradient():
    # Liger-Kernel #678: reduction='none' with long runs of ignore_index gave all-zero gradients.
    logits, labels = batch(b=2, t=300, v=40, ignore_every=1000)
    labels[:, 10:290] = -100
    ours, our_grad = values_and_grads(lossguard.causal_lm_loss, logits, labels, reduction="none")
    ref, ref_grad = values_and_grads(reference, logits, labels, reduction="none")
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(our_grad, ref_grad, rtol=1e-4, atol=1e-6)
    assert our_grad.abs().sum() > 0
    assert our_grad[:, 11:289].abs().sum() == 0  # positions predicting ignored labels


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_a_micro_batch_without_labels_is_zero_never_nan(reduction):
    logits, labels = batch()
    labels.fill_(-100)
    for num_items in [None, 0]:
        x = logits.clone().requires_grad_(True)
        loss = lossguard.causal_lm_loss(x, labels, reduction=reduction, num_items=num_items)
        loss.backward()
        assert loss.item() == 0.0
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() == 0


def test_reduced_precision_logits_are_computed_in_float32():
    logits, labels = batch()
    for dtype in [torch.float32, torch.bfloat16, torch.float16]:
        x = logits.to(dtype).requires_grad_(True)
        loss = lossguard.causal_lm_loss(x, labels)
        loss.backward()
        assert loss.dtype == torch.float32 and x.grad.dtype == dtype
        ref = reference(logits.to(dtype).double(), labels)
        torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("call, error, message", [
    (lambda l, y: lossguard.causal_lm_loss(l[0], y), ValueError, "logits must be [B, T, V]"),
    (lambda l, y: lossguard.causal_lm_loss(l, y[:, :-1]), ValueError, "labels must be [B, T]"),
    (lambda l, y: lossguard.causal_lm_loss(l, y.float()), TypeError, "labels must be integers"),
    (lambda l, y: lossguard.causal_lm_loss(l.long(), y), TypeError,
     "logits must be a floating-point tensor"),
    (lambda l, y: lossguard.causal_lm_loss(l, y + 100), ValueError, "is outside [0, 50)"),
    (lambda l, y: lossguard.causal_lm_loss(l, y, num_items=-1), ValueError,
     "num_items must be >= 0"),
    (lambda l, y: lossguard.causal_lm_loss(l, y, reduction="none", num_items=3), ValueError,
     "does not go with reduction"),
    (lambda l, y: lossguard.causal_lm_loss(l, y, reduction="avg"), ValueError,
     "reduction must be 'mean', 'sum' or 'none'"),
    (lambda l, y: lossguard.causal_lm_loss(l.tolist(), y), TypeError, "must be a torch.Tensor"),
    (lambda l, y: lossguard.causal_lm_loss(l, y, num_items=2.5), TypeError, "num_items must be"),
    (lambda l, y: lossguard.causal_lm_loss(l, y, num_items=torch.tensor([1.0])), TypeError,
     "num_items must be"),
])
def test_bad_arguments_raise_with_the_cpp_message(call, error, message):
    logits, labels = batch()
    with pytest.raises(error) as raised:
        call(logits, labels)
    assert message in str(raised.value)


def test_grad_stats_match_clip_grad_norm_and_count_nonfinite_elements():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 3))
    model(torch.randn(4, 8)).pow(2).sum().backward()
    stats = lossguard.grad_stats(model.parameters())
    expected = torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9).item()
    assert stats["grad_norm"] == pytest.approx(expected, rel=1e-6)
    assert stats["nonfinite_grads"] == 0
    model[1].weight.grad[0, 0] = float("nan")
    stats = lossguard.grad_stats(model.parameters())
    assert stats["nonfinite_grads"] == 1 and stats["grad_norm"] != stats["grad_norm"]
