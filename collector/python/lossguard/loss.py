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


def grad_stats(parameters: Iterable[torch.Tensor]) -> dict:
    """Gradient statistics before clipping: ``{"grad_norm": total L2 norm (NaN/Inf when a gradient
    holds one), "nonfinite_grads": number of NaN/Inf gradient elements}``, ready to pass to
    ``Collector.record_step(**...)``. Parameters without a gradient are skipped; gradients are
    read, never modified."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    return _C.grad_stats([p for p in parameters if p.grad is not None])
