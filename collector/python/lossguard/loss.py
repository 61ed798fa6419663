"""The causal-LM cross entropy of lossguard's C++ collector, as a torch autograd function."""

import numbers
from typing import Iterable, Optional, Union

import torch

from lossguard import _C


def _as_count(value: Union[int, torch.Tensor, None], name: str) -> Optional[int]:
    """An int, or a one-element integer tensor (as the Hugging Face Trainer passes
    num_items_in_batch), as an int. Reading a tensor synchronises with its device."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_floating_point() or value.is_complex():
            raise TypeError(f"{name} must be an int or a one-element integer tensor, "
                            f"but got a {value.dtype} tensor of shape {list(value.shape)}")
        return int(value.item())
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, but got {type(value).__name__}")
    return int(value)


def _require_tensor(value, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, but got {type(value).__name__}")


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = -100,
                   reduction: str = "mean",
                   num_items: Union[int, torch.Tensor, None] = None) -> torch.Tensor:
    """Causal-LM cross entropy with exact gradients, computed by lossguard's C++ collector.

    logits: [B, T, V], any floating dtype (computed in float32). labels: [B, T], integers;
    ``ignore_index`` marks positions without a label. Position t of the logits predicts
    ``labels[:, t+1]`` (the shift is done here: pass the labels as they come with the inputs).

    reduction: "mean" (sum over the label tokens / their number; 0, not NaN, when there are none),
    "sum", or "none" (per-position losses [B, T-1], 0 where ignored).

    num_items: divide the sum by this count instead, whatever reduction says (not with "none"). For
    gradient accumulation pass the label tokens of the whole optimizer step across ranks
    (``count_label_tokens`` or ``AccumulationWindow.num_items``): summed over the micro-batches the
    losses then give the gradient of the token-level mean loss. A one-element tensor is accepted
    (the Hugging Face Trainer passes ``num_items_in_batch`` as one).

    Raises TypeError for arguments that are not tensors or tensors of the wrong dtype, ValueError
    for wrong shapes, labels outside [0, V) that are not ignore_index, a negative num_items or
    num_items with reduction "none"; the message is the C++ collector's.
    """
    _require_tensor(logits, "logits")
    _require_tensor(labels, "labels")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be an int, but got {type(ignore_index).__name__}")
    if not isinstance(reduction, str):
        raise TypeError(f"reduction must be a str, but got {type(reduction).__name__}")
    return _C.causal_lm_loss(logits, labels, int(ignore_index), reduction,
                             _as_count(num_items, "num_items"))


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                         bias: Optional[torch.Tensor] = None, ignore_index: int = -100,
                         reduction: str = "mean",
                         num_items: Union[int, torch.Tensor, None] = None,
                         shift_labels: bool = True, chunk_tokens: int = 0,
                         chunk_vocab: int = 0) -> torch.Tensor:
    """``causal_lm_loss(hidden @ weight.T + bias, labels)`` without the logits: the output
    projection and the cross entropy fused, computed chunk by chunk by lossguard's C++ collector.
    The [N, V] logits never exist, in the forward or the backward pass; gradients reach ``hidden``,
    ``weight`` and ``bias`` (those that require them) exactly as through ``F.linear`` +
    ``F.cross_entropy``.

    hidden: [B, T, D] with labels [B, T] (or [N, D] with labels [N]); weight: [V, D] (the LM
    head's ``weight``); bias: [V] or None. float32, float64, bfloat16 or float16, one dtype for all
    three; chunks are computed in float32 (float64 for float64). Position t predicts
    ``labels[..., t+1]`` as in ``causal_lm_loss``; ``shift_labels=False`` for labels already
    aligned with the positions. reduction, num_items and ignore_index as in ``causal_lm_loss``.
    chunk_tokens / chunk_vocab: chunk sizes (0 chooses them from the shapes, about 16 MB of logits
    per chunk).

    Raises TypeError for non-tensors and wrong dtypes, ValueError for wrong shapes, devices,
    labels or options; the message is the C++ collector's.
    """
    _require_tensor(hidden, "hidden")
    _require_tensor(weight, "weight")
    _require_tensor(labels, "labels")
    if bias is not None:
        _require_tensor(bias, "bias")
    for name, value in (("ignore_index", ignore_index), ("chunk_tokens", chunk_tokens),
                        ("chunk_vocab", chunk_vocab)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an int, but got {type(value).__name__}")
    if not isinstance(reduction, str):
        raise TypeError(f"reduction must be a str, but got {type(reduction).__name__}")
    return _C.linear_cross_entropy(hidden, weight, labels, bias, int(ignore_index), reduction,
                                   _as_count(num_items, "num_items"), bool(shift_labels),
                                   int(chunk_tokens), int(chunk_vocab))


def grad_stats(parameters: Iterable[torch.Tensor]) -> dict:
    """Gradient statistics before clipping: ``{"grad_norm": total L2 norm (NaN/Inf when a gradient
    holds one), "nonfinite_grads": number of NaN/Inf gradient elements}``, ready to pass to
    ``Collector.record_step(**...)``. Parameters without a gradient are skipped; gradients are
    read, never modified."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    return _C.grad_stats([p for p in parameters if p.grad is not None])
