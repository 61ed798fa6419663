"""The Hugging Face Trainer integration: a TrainerCallback that streams the Trainer's logged steps
to lossguard, and a loss function for the Trainer that also gives those records the correctly
normalised reference loss and per-micro-batch data.

    from lossguard.integrations.hf import LossguardCallback

    lossguard_cb = LossguardCallback(server="http://127.0.0.1:8080", vocab_size=32000)
    trainer = Trainer(model=model, args=args, train_dataset=data,
                      callbacks=[lossguard_cb],
                      compute_loss_func=lossguard_cb.loss_func)   # optional: full records

Follows the interfaces of transformers 4.46 to 4.5x (``TrainerCallback`` events and their
arguments, ``compute_loss_func(outputs, labels, num_items_in_batch)``, ``num_items_in_batch`` in a
custom ``compute_loss``). transformers is not needed to import this module: without it the callback
has the same method names and signatures, so it can be driven by hand (and is tested that way).
"""

import math
import os
from typing import List, Optional

import torch

from lossguard import _C
from lossguard.collector import Collector
from lossguard.loss import causal_lm_loss

# transformers.TrainerCallback's events (4.46-4.5x); each takes (args, state, control, **kwargs).
_TRAINER_EVENTS = (
    "on_init_end", "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_step_begin", "on_pre_optimizer_step", "on_optimizer_step", "on_substep_end", "on_step_end",
    "on_evaluate", "on_predict", "on_save", "on_log", "on_prediction_step")

try:  # the base class when transformers is there
    from transformers import TrainerCallback as _CallbackBase
except ImportError:  # pragma: no cover - depends on the machine

    class _CallbackBase:
        """transformers.TrainerCallback's interface without transformers: every event, doing
        nothing."""

    def _ignore_event(self, args, state, control, **kwargs):
        return control

    for _event in _TRAINER_EVENTS:
        setattr(_CallbackBase, _event, _ignore_event)


def _logits_of(outputs) -> torch.Tensor:
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


class LossguardCallback(_CallbackBase):
    """Streams the Trainer's training logs to a lossguard server as step records.

    Each ``on_log`` entry with a ``loss`` becomes the record of ``state.global_step``: ``loss``,
    ``grad_norm``, ``learning_rate`` (as ``lr``), and from the arguments
    ``gradient_accumulation_steps``, ``per_device_train_batch_size``, the world size and this
    process's rank. Every process sends its own record.

    When the Trainer's loss goes through ``loss_func`` (or ``loss`` in a custom ``compute_loss``),
    the records also carry ``ref_loss`` (the token-normalised loss, summed over micro-batches and
    ranks) and, for steps logged one at a time (``logging_steps=1``), ``tokens`` and the
    per-micro-batch losses: what lossguard needs to say which normalisation a wrong loss came from.
    A logged loss averaged over several steps is paired with the mean of those steps' reference
    losses, which is what a correct trainer logs.

    server, run, token, spool_dir, vocab_size: as for ``lossguard.Collector`` (run defaults to
    ``args.run_name``, else the name of ``args.output_dir``). Or pass a ready ``collector``.
    all_reduce_reference: sum the reference loss over ranks at each step (a collective in
    ``on_step_end``, which every rank runs) when torch.distributed is initialised.
    """

    def __init__(self, server: Optional[str] = None, run: Optional[str] = None, *,
                 token: Optional[str] = None, spool_dir: Optional[str] = None,
                 vocab_size: Optional[int] = None, collector: Optional[Collector] = None,
                 ignore_index: int = -100, all_reduce_reference: bool = True):
        self.server = server if server is not None else os.environ.get("LOSSGUARD_SERVER")
        self.run = run
        self.token = token
        self.spool_dir = spool_dir
        self.vocab_size = vocab_size
        self.collector = collector
        self.ignore_index = ignore_index
        self.all_reduce_reference = all_reduce_reference
        self._owns_collector = collector is None
        self._micro: List[tuple] = []       # (loss_sum tensor, tokens) of the step in progress
        self._steps: List[dict] = []        # reference data of steps since the last log
        self._last_logged_step = 0

    # ---- the loss ----------------------------------------------------------------------------

    def loss(self, logits: torch.Tensor, labels: torch.Tensor,
             num_items_in_batch=None) -> torch.Tensor:
        """The loss of one micro-batch, for a custom ``compute_loss``: token losses summed and
        divided by ``num_items_in_batch`` (the label tokens of the whole optimizer step, as
        transformers >= 4.46 passes it) or, without it, by this micro-batch's label tokens. Also
        notes the micro-batch's loss sum and tokens for the step's record. Nothing here waits for
        the device: counts stay tensors (a tensor ``num_items_in_batch`` too) until the step's
        one read in ``on_step_end``."""
        loss_sum = causal_lm_loss(logits, labels, ignore_index=self.ignore_index, reduction="sum")
        tokens = _C.label_tokens(labels, "shifted", self.ignore_index)
        if torch.is_grad_enabled() and loss_sum.requires_grad:  # training, not evaluation
            self._micro.append((loss_sum.detach(), tokens))
        divisor = tokens if num_items_in_batch is None else num_items_in_batch
        if isinstance(divisor, torch.Tensor):
            if divisor.numel() != 1 or divisor.is_floating_point() or divisor.is_complex():
                raise TypeError("num_items_in_batch must be an int or a one-element integer "
                                f"tensor, but got a {divisor.dtype} tensor of shape "
                                f"{list(divisor.shape)}")
            divisor = divisor.reshape(()).to(loss_sum.device, non_blocking=True)
            # No tokens in the whole step: the sum is 0 with a zero gradient, and so is sum / 1.
            return loss_sum / divisor.clamp_min(1)
        if isinstance(divisor, bool) or not isinstance(divisor, int):
            raise TypeError(f"num_items_in_batch must be an int, but got {type(divisor).__name__}")
        return loss_sum * 0.0 if divisor == 0 else loss_sum / divisor

    def loss_func(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        """``Trainer(compute_loss_func=...)``: ``loss`` on the outputs' logits."""
        return self.loss(_logits_of(outputs), labels, num_items_in_batch)

    # ---- TrainerCallback events --------------------------------------------------------------

    def on_train_begin(self, args, state, control, **kwargs):
        if self.collector is None:
            run = self.run or getattr(args, "run_name", None) or os.path.basename(
                os.path.normpath(getattr(args, "output_dir", "") or "hf-run"))
            self.collector = Collector(
                self.server, run, token=self.token, spool_dir=self.spool_dir,
                rank=getattr(args, "process_index", 0), world_size=getattr(args, "world_size", 1),
                micro_batch_size=args.per_device_train_batch_size,
                ga_steps=args.gradient_accumulation_steps, vocab_size=self.vocab_size)
        self._last_logged_step = state.global_step
        self._micro.clear()
        self._steps.clear()
        return control

    def on_step_end(self, args, state, control, **kwargs):
        """Closes the step's accumulation window: its reference loss over micro-batches (and
        ranks)."""
        if not self._micro:
            return control
        n = len(self._micro)
        sums = torch.stack([s.double() for s, _ in self._micro])
        counts = torch.stack([t.to(sums.device, torch.float64, non_blocking=True)
                              for _, t in self._micro])
        total = torch.stack([sums.sum(), counts.sum()])  # on the device, for any backend
        if self.all_reduce_reference:
            import torch.distributed as dist
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                dist.all_reduce(total)  # the step's one collective
        values = torch.cat([total, sums, counts]).tolist()  # and its one read from the device
        global_sum, global_tokens = values[0], values[1]
        sums, counts = values[2:2 + n], [int(t) for t in values[2 + n:]]
        tokens = sum(counts)
        micro = [{"loss": s / t if t else 0.0, "tokens": t, "loss_sum": s}
                 for s, t in zip(sums, counts)]
        self._steps.append({
            "step": state.global_step,
            "ref_loss": global_sum / global_tokens if global_tokens else 0.0,
            "tokens": tokens,
            "micro": micro,
        })
        self._micro.clear()
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        """A training log entry (one with ``loss``) becomes the record of ``state.global_step``."""
        if not logs or "loss" not in logs or self.collector is None:
            return control
        step = state.global_step
        fields = {
            "ga_steps": args.gradient_accumulation_steps,
            "micro_batch_size": args.per_device_train_batch_size,
            "world_size": getattr(args, "world_size", 1),
        }
        if logs.get("grad_norm") is not None:
            fields["grad_norm"] = float(logs["grad_norm"])
        if logs.get("learning_rate") is not None:
            fields["lr"] = float(logs["learning_rate"])
        covered = [s for s in self._steps if self._last_logged_step < s["step"] <= step]
        if covered:
            fields["ref_loss"] = math.fsum(s["ref_loss"] for s in covered) / len(covered)
            if len(covered) == 1 and step - self._last_logged_step == 1:
                fields["tokens"] = covered[0]["tokens"]
                fields["micro"] = covered[0]["micro"]
        self._steps = [s for s in self._steps if s["step"] > step]
        self._last_logged_step = step
        self.collector.record_step(step, float(logs["loss"]), **fields)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        """Flushes; a collector this callback made is closed (what is undelivered stays spooled)."""
        if self.collector is not None:
            if self._owns_collector:
                self.collector.close()
                self.collector = None
            else:
                self.collector.flush()
        return control
