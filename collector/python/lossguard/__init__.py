"""lossguard: training-loss sanity for PyTorch training loops.

The correctly normalised causal-LM loss, token counting over the gradient-accumulation window and
across data-parallel ranks, and a collector that streams each optimizer step to a lossguard server
without blocking the training loop. Everything runs in lossguard's C++ collector (``lossguard._C``);
these modules give it a Python interface.

    import lossguard

    with lossguard.Collector(server="http://127.0.0.1:8080", run="my-run") as collector:
        for step in range(steps):
            window = lossguard.AccumulationWindow([mb["labels"] for mb in micro_batches])
            for i, mb in enumerate(micro_batches):
                window.loss(i, model(mb["input_ids"])).backward()
                # or fused, from the last hidden states (the logits never exist):
                # window.linear_loss(i, hidden_states, model.lm_head.weight).backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step(); optimizer.zero_grad()
            collector.record_step(step, window.reference_loss(), window=window,
                                  grad_norm=grad_norm, lr=scheduler.get_last_lr()[0])
"""


def _check_torch() -> None:
    """Refuses, with what to do, an interpreter whose torch is not the one the extension was
    compiled against: loading it there fails with undefined symbols at best."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "lossguard needs PyTorch, and this interpreter cannot import torch "
            f"({error}). Install torch first (pip install torch), then lossguard.") from error
    from lossguard import _build_info

    if torch.__version__ != _build_info.TORCH_VERSION:
        raise ImportError(
            f"lossguard's extension was built for torch {_build_info.TORCH_VERSION}, but this "
            f"interpreter has torch {torch.__version__}. Rebuild lossguard against it: "
            f"pip install --no-build-isolation --no-deps --force-reinstall {_build_info.SOURCE_DIR}")


_check_torch()

from lossguard.accumulation import AccumulationWindow, count_label_tokens  # noqa: E402
from lossguard.collector import Collector  # noqa: E402
from lossguard.guard import (GuardDecision, GuardStopped, STOP_EXIT_CODE,  # noqa: E402
                             policy_from_toml)
from lossguard.loss import causal_lm_loss, grad_stats, linear_cross_entropy  # noqa: E402

__all__ = [
    "AccumulationWindow",
    "Collector",
    "GuardDecision",
    "GuardStopped",
    "STOP_EXIT_CODE",
    "causal_lm_loss",
    "count_label_tokens",
    "grad_stats",
    "linear_cross_entropy",
    "policy_from_toml",
]
__version__ = "0.1.0"
