"""The guard's actions on a Trainer's state: a lower learning rate, a rollback to a checkpoint the
Trainer saved."""

import logging
import os

import torch

_log = logging.getLogger("lossguard")


def scale_learning_rate(optimizer, lr_scheduler, factor: float) -> None:
    """Multiplies the learning rate from now on: the optimizer's groups and what a scheduler
    computes them from (its base_lrs and the groups' initial_lr)."""
    for group in getattr(optimizer, "param_groups", []):
        group["lr"] *= factor
        if "initial_lr" in group:
            group["initial_lr"] *= factor
    if lr_scheduler is not None and hasattr(lr_scheduler, "base_lrs"):
        lr_scheduler.base_lrs = [lr * factor for lr in lr_scheduler.base_lrs]


def restore_checkpoint(output_dir: str, step: int, model, optimizer) -> bool:
    """Loads the model's weights and the optimizer's state from the Trainer's checkpoint-<step>;
    False (and an error logged) when it is not there any more (save_total_limit)."""
    path = os.path.join(output_dir, f"checkpoint-{step}")
    weights = os.path.join(path, "model.safetensors")
    if not os.path.isfile(weights):
        weights = os.path.join(path, "pytorch_model.bin")
    if not os.path.isfile(weights):
        _log.error("lossguard: cannot roll back: no model weights in %s; stopping instead", path)
        return False
    if weights.endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(weights, device="cpu")
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    # Tied weights (an LM head sharing the embedding) are saved once.
    model.load_state_dict(state, strict=False)
    optimizer_state = os.path.join(path, "optimizer.pt")
    if optimizer is not None and os.path.isfile(optimizer_state):
        optimizer.load_state_dict(torch.load(optimizer_state, map_location="cpu",
                                             weights_only=False))
    _log.warning("lossguard: rolled back to %s", path)
    return True
