"""Token counting over the gradient-accumulation window and across data-parallel ranks."""

from typing import List, Optional, Sequence, Tuple

import torch

from lossguard import _C


def _ranks(group) -> Tuple[Optional[object], int]:
    """The all-reduce and world size for ``group``: None means torch.distributed's default group
    when it is initialised (what DDP uses), else this process alone; False means this process
    alone."""
    if group is False:
        return None, 1
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        if group is not None:
            raise ValueError("a process group was given, but torch.distributed is not initialised")
        return None, 1
    world_size = dist.get_world_size(group)

    def all_reduce_sum(tensor: torch.Tensor) -> None:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)

    return all_reduce_sum, world_size


def _labels_list(micro_batch_labels) -> List[torch.Tensor]:
    if isinstance(micro_batch_labels, torch.Tensor):
        raise TypeError("pass the labels of each micro-batch as a list of [B, T] tensors "
                        "(a single micro-batch: [labels])")
    labels = list(micro_batch_labels)
    for i, tensor in enumerate(labels):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"micro-batch {i}: labels must be a torch.Tensor, "
                            f"but got {type(tensor).__name__}")
    return labels


def count_label_tokens(micro_batch_labels: Sequence[torch.Tensor], *, group=None,
                       ignore_index: int = -100, label_count: str = "shifted") -> int:
    """Label tokens of one optimizer step: summed over its micro-batches, and over the ranks of
    ``group`` (a collective: every rank calls it). This is ``num_items`` for ``causal_lm_loss``.

    label_count "shifted" counts ``labels[:, 1:] != ignore_index``, exactly the tokens the causal
    loss predicts; "unshifted" counts ``labels != ignore_index``, as Hugging Face transformers
    counts ``num_items_in_batch``.
    """
    labels = _labels_list(micro_batch_labels)
    counts = [_C.label_tokens(t, label_count, int(ignore_index)) for t in labels]
    # Summed as tensors and read once (one wait for the device, not one per micro-batch).
    total = torch.stack(counts).sum().reshape(1) if counts else torch.zeros(1, dtype=torch.long)
    all_reduce, world_size = _ranks(group)
    if all_reduce is not None and world_size > 1:
        all_reduce(total)
    return int(total.item())


class AccumulationWindow:
    """One optimizer step's gradient accumulation, normalised by the global token count.

    The loss of the step is the sum of token losses over every micro-batch and rank divided by the
    total number of label tokens; it does not depend on how the same tokens are split into
    micro-batches, accumulation steps and ranks::

        window = lossguard.AccumulationWindow([mb["labels"] for mb in micro_batches])
        for i, mb in enumerate(micro_batches):          # in order
            window.loss(i, model(mb["input_ids"])).backward()
        ref_loss = window.reference_loss()              # the step's correct loss

    The constructor counts label tokens (before any forward pass) and, with ranks, all-reduces the
    count; ``reference_loss()`` all-reduces the loss sum. Both are collectives: every rank calls
    them, in the same order.

    group: a torch.distributed process group; None (the default) uses the default group when
    torch.distributed is initialised, False keeps the window to this process.
    gradients_averaged_across_ranks: DDP averages gradients over ranks; each micro-batch loss is
    multiplied by the world size to cancel that. Set False when gradients are summed instead.
    defer_normalisation: divide by the global token count after backward instead of before:
    ``loss``/``linear_loss`` return each micro-batch's token-loss sum, and
    ``normalise_gradients(model.parameters())`` (after the last backward, before clipping and the
    optimizer step) divides the gradients. The step then makes one collective instead of two
    (the count travels with the loss sum)::

        window = lossguard.AccumulationWindow(labels, defer_normalisation=True)  # no collective
        for i, mb in enumerate(micro_batches):
            window.loss(i, model(mb["input_ids"])).backward()
        window.normalise_gradients(model.parameters())  # the step's one collective
    """

    def __init__(self, micro_batch_labels: Sequence[torch.Tensor], *, group=None,
                 ignore_index: int = -100, label_count: str = "shifted",
                 gradients_averaged_across_ranks: bool = True,
                 defer_normalisation: bool = False):
        labels = _labels_list(micro_batch_labels)
        all_reduce, world_size = _ranks(group)
        self._window = _C.AccumulationWindow(labels, int(ignore_index), label_count, all_reduce,
                                             world_size, bool(gradients_averaged_across_ranks),
                                             bool(defer_normalisation))

    def loss(self, index: int, logits: torch.Tensor) -> torch.Tensor:
        """The loss to backpropagate for micro-batch ``index`` (0, 1, ... in order) given its logits
        [B, T, V]: its summed token loss x (world size, if gradients are averaged) / global label
        tokens. A zero with zero gradient when the window has no label tokens, never NaN."""
        if not isinstance(logits, torch.Tensor):
            raise TypeError(f"logits must be a torch.Tensor, but got {type(logits).__name__}")
        return self._window.loss(index, logits)

    def observe(self, index: int, logits: torch.Tensor) -> None:
        """For a loop that keeps its own loss: notes micro-batch ``index``'s summed token loss and
        label tokens for ``reference_loss()`` and the record, from logits it already has, without
        taking part in what the loop backpropagates (one cross entropy forward over the detached
        logits; no gradient, no second backward). Then pass the loop's own loss as the record's
        ``loss``: lossguard compares the two."""
        if not isinstance(logits, torch.Tensor):
            raise TypeError(f"logits must be a torch.Tensor, but got {type(logits).__name__}")
        with torch.no_grad():
            self._window.loss(index, logits.detach())

    def linear_loss(self, index: int, hidden: torch.Tensor, weight: torch.Tensor,
                    bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``loss(index, hidden @ weight.T + bias)`` through ``linear_cross_entropy``: the same
        normalisation from the final hidden states [B, T, D] and the LM head's weight [V, D] (and
        bias), without materialising the logits."""
        for name, value in (("hidden", hidden), ("weight", weight)):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, but got {type(value).__name__}")
        if bias is not None and not isinstance(bias, torch.Tensor):
            raise TypeError(f"bias must be a torch.Tensor, but got {type(bias).__name__}")
        return self._window.linear_loss(index, hidden, weight, bias)

    def normalise_gradients(self, parameters) -> None:
        """With ``defer_normalisation=True``: multiplies every gradient by (world size, if
        gradients are averaged) / the step's global label tokens, which makes them the gradients
        of the token-level mean loss. A collective; call once, after the last backward."""
        if isinstance(parameters, torch.Tensor):
            parameters = [parameters]
        self._window.normalise_gradients([p for p in parameters if p.grad is not None])

    def reference_loss(self) -> float:
        """Sum of token losses over every micro-batch and rank / global label tokens: the correctly
        normalised loss of the step. Needs a loss for every micro-batch. The first call (or
        ``Collector.record_step(window=...)``) makes the window's second collective (the loss sum,
        with ranks) and its one read from the device; later calls reuse them."""
        return self._window.reference_loss()

    @property
    def num_items(self) -> int:
        """Label tokens of the step over every micro-batch and rank (``num_items`` of
        ``causal_lm_loss``)."""
        return self._window.global_tokens

    @property
    def local_tokens(self) -> int:
        """Label tokens of this rank's micro-batches."""
        return self._window.local_tokens

    @property
    def ga_steps(self) -> int:
        return self._window.ga_steps

    @property
    def world_size(self) -> int:
        return self._window.world_size

    def micro_batches(self) -> List[dict]:
        """Per micro-batch ``{"loss", "tokens", "loss_sum"}``, for those whose loss() was computed."""
        return self._window.micro_batches()
