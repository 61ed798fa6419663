"""What the Trainer hands the callback, read the same way across transformers versions: the
logits and loss of a model output, and the label counts it passes as num_items_in_batch."""

import math
from typing import Optional, Tuple

import torch


def logits_of(outputs) -> torch.Tensor:
    """The logits of a model output: a ModelOutput or dict with "logits", a tuple whose first
    element is them, or the tensor itself."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict) or hasattr(outputs, "keys"):
        return outputs["logits"]
    if hasattr(outputs, "logits"):
        return outputs.logits
    if isinstance(outputs, (tuple, list)):
        return outputs[0]
    raise TypeError(f"cannot find the logits in a {type(outputs).__name__}")


def model_loss_of(output) -> Optional[torch.Tensor]:
    """The 0-d loss a model output carries (a ModelOutput or dict with "loss"), else None."""
    loss = output.get("loss") if hasattr(output, "get") else getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.is_floating_point():
        return loss
    return None


def fused_head_sums(output) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """TRL's fused LM head returns the label tokens' log-probabilities (0 where ignored) and their
    mask instead of logits: then (the token losses' sum, the label count), else None."""
    log_probs = getattr(output, "log_probs", None)
    label_mask = getattr(output, "label_mask", None)
    if isinstance(log_probs, torch.Tensor) and isinstance(label_mask, torch.Tensor):
        return -(log_probs.detach().double() * label_mask).sum(), label_mask.sum()
    return None


def count_on(device, count) -> torch.Tensor:
    """A count (a number, or the tensor the Trainer passes as num_items_in_batch: one element, or
    the same one repeated per GPU under DataParallel) as a 0-d float64 tensor on `device`, without
    waiting for the device."""
    if isinstance(count, torch.Tensor):
        return count.detach().reshape(-1)[0].to(device, torch.float64, non_blocking=True)
    return torch.tensor(float(count), dtype=torch.float64, device=device)


def trainer_count_convention(trainer_count: float, local: list, total: list) -> str:
    """Which label count the Trainer divided by: "unshifted" when its num_items_in_batch equals
    this step's count of every label (this rank's or all ranks'), else "shifted" (the count after
    the causal shift, also when the Trainer passed none or another number)."""
    if math.isnan(trainer_count):
        return "shifted"
    for convention, column in (("shifted", 1), ("unshifted", 2)):
        if any(abs(trainer_count - counts[column]) < 0.5 for counts in (local, total)):
            return convention
    return "shifted"
