"""The Hugging Face Trainer integration: a TrainerCallback that streams the Trainer's logged steps
to lossguard with the correctly normalised reference loss and per-micro-batch data, taken from the
forward passes the Trainer already makes (the loss the Trainer uses stays as it is).

    from lossguard.integrations.hf import LossguardCallback

    lossguard_cb = LossguardCallback(server="http://127.0.0.1:8080")
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[lossguard_cb])
    # optional: compute_loss_func=lossguard_cb.loss_func puts lossguard's own loss in the loss path

Tested inside transformers 4.45.2, 4.46.0, 4.57.6 and 5.25.0, TRL 1.16's SFTTrainer and a gloo DDP
Trainer (``TrainerCallback`` events and their arguments, ``compute_loss_func(outputs, labels,
num_items_in_batch)``, ``num_items_in_batch`` in a custom ``compute_loss``). transformers is not
needed to import this module: without it the callback has the same method names and signatures,
so it can be driven by hand.
"""

import logging
import math
import os
from typing import List, Optional

import torch

from lossguard import _C
from lossguard.collector import Collector
from lossguard.guard import GuardStopped, Policy
from lossguard.integrations._callback_base import CallbackBase
from lossguard.integrations._outputs import (count_on, fused_head_sums, logits_of, model_loss_of,
                                             trainer_count_convention)
from lossguard.integrations._trainer_actions import restore_checkpoint, scale_learning_rate
from lossguard.loss import causal_lm_loss

_log = logging.getLogger("lossguard")

# Micro-batches on which the model's own loss must match a cross entropy of its logits before the
# reference is taken from it, and how often it is checked again after that.
_MODEL_LOSS_CHECKS = 4
_MODEL_LOSS_RECHECK_EVERY = 64

class LossguardCallback(CallbackBase):
    """Streams the Trainer's training logs to a lossguard server as step records.

    Each ``on_log`` entry with a ``loss`` becomes the record of ``state.global_step``: ``loss``,
    ``grad_norm``, ``learning_rate`` (as ``lr``), and from the arguments
    ``gradient_accumulation_steps``, ``per_device_train_batch_size``, the world size and this
    process's rank; ``vocab_size`` from the model's config. Every process sends its own record.

    The reference: the callback watches the model's forward passes in training (a forward hook,
    nothing replaced): from each micro-batch's logits and the ``labels`` the model was given it
    sums the token losses (one cross entropy without gradient, in lossguard's C++ collector) and
    counts the label tokens. A model that computes its own loss from those labels saves that pass:
    once its loss times its divisor has matched the sum on 4 micro-batches, the sum is taken from
    it (checked again every 64 micro-batches; a model whose loss does not match is never trusted
    again, and the log says so). At the end of the optimizer step these give ``ref_loss``, the
    token-normalised loss over micro-batches and ranks, and, for steps logged one at a time
    (``logging_steps=1``), ``tokens`` and the per-micro-batch losses: what lossguard needs to say
    which normalisation a wrong loss came from. When the loss goes through ``loss_func`` (or
    ``loss``) the callback takes the sums from there instead and makes no second pass. A loss
    computed from inputs the model never saw (labels popped before the forward pass) gets no
    reference: lossguard then judges it against ln(vocab_size) and the configuration.

    Token counts follow the Trainer's own convention: the divisor it passes as
    ``num_items_in_batch`` counts every label (transformers 4.46-4.5x) or only the labels after the
    causal shift (5.x); the callback finds which by comparing that divisor with both of its counts,
    so a correct Trainer's loss equals ``ref_loss`` exactly and a wrong one is off by its bug's
    factor. Without ``num_items_in_batch`` (a Trainer dividing per micro-batch) the shifted count,
    the one a causal LM's mean is taken over, is used. A logged loss averaged over several steps is
    paired with the mean of those steps' reference losses, which is what a correct trainer logs.

    server, run, token, ca_file, spool_dir, vocab_size: as for ``lossguard.Collector`` (run
    defaults to ``args.run_name``, else the name of ``args.output_dir``; vocab_size to the
    model's ``config.vocab_size``). Or pass a ready ``collector``.
    watch_model: attach the forward hook (needs torch >= 2.0); False sends what the Trainer logs
    and what ``loss_func`` sees only.
    all_reduce_reference: sum the reference over ranks at each step (a collective in
    ``on_step_end``, which every rank runs) when torch.distributed is initialised.
    guard: a policy (``lossguard.guard``) to act on verdicts through the Trainer's own controls.
    Before each optimizer step (``on_pre_optimizer_step``) the callback judges the step's own
    reference loss and gradient norm (non-finite values, no server needed) and the run's latest
    server verdicts, then: skip_step leaves the optimizer nothing to apply (the gradients are
    dropped); lower_lr scales the optimizer's and the scheduler's learning rates; rollback restores
    the model and optimizer from the last ``checkpoint-N`` saved before the episode began (the data
    goes on, the offending batches are not seen again); stop sets ``should_save`` and
    ``should_training_stop`` (the Trainer saves a checkpoint and ends), then the collector is
    flushed and ``trainer.train()`` raises ``lossguard.GuardStopped`` (a SystemExit with
    ``lossguard.STOP_EXIT_CODE``) unless ``exit_on_stop=False``. The server judges logged steps:
    guard with ``logging_steps=1``. Several processes: only warn policies for now.
    """

    def __init__(self, server: Optional[str] = None, run: Optional[str] = None, *,
                 token: Optional[str] = None, ca_file: Optional[str] = None,
                 spool_dir: Optional[str] = None, vocab_size: Optional[int] = None,
                 collector: Optional[Collector] = None, ignore_index: int = -100,
                 watch_model: bool = True, all_reduce_reference: bool = True,
                 guard: Optional[Policy] = None, exit_on_stop: bool = True):
        self.server = server if server is not None else os.environ.get("LOSSGUARD_SERVER")
        self.run = run
        self.token = token
        self.ca_file = ca_file
        self.spool_dir = spool_dir
        self.vocab_size = vocab_size
        self.collector = collector
        self.ignore_index = ignore_index
        self.watch_model = watch_model
        self.all_reduce_reference = all_reduce_reference
        self.guard = guard
        self.exit_on_stop = exit_on_stop
        self.stopped_by = None             # the guard's action that stopped training, if any
        self._closed_step = None           # the step whose window on_pre_optimizer_step closed
        self._owns_collector = collector is None
        self._hook = None
        # Per micro-batch of the step in progress: (loss_sum, shifted count, unshifted count), as
        # tensors on the device; from loss() when it is in the loss path, else from the hook.
        self._loss_micro: List[tuple] = []
        self._hook_micro: List[tuple] = []
        self._loss_in_use = False
        self._num_items = None             # the step's num_items_in_batch, as the Trainer gave it
        self._trust_model_loss = None      # False once the model's own loss failed a check
        self._model_loss_checks = 0        # micro-batches whose model loss matched the logits
        self._forward_passes = 0
        self._pending_checks: List[tuple] = []
        self._steps: List[dict] = []       # reference data of steps since the last log
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
            self._loss_in_use = True
            self._note_micro(self._loss_micro, loss_sum, labels, tokens)
            if num_items_in_batch is not None:
                self._num_items = num_items_in_batch
        divisor = tokens if num_items_in_batch is None else num_items_in_batch
        if isinstance(divisor, torch.Tensor):
            # transformers 5.x passes a float tensor (the count divided by its parallel sizes).
            if divisor.numel() != 1 or divisor.is_complex() or divisor.dtype == torch.bool:
                raise TypeError("num_items_in_batch must be a number or a one-element tensor, "
                                f"but got a {divisor.dtype} tensor of shape "
                                f"{list(divisor.shape)}")
            divisor = divisor.reshape(()).to(loss_sum.device, non_blocking=True)
            # No tokens in the whole step: the sum is 0 with a zero gradient, and so is sum / 1.
            return loss_sum / divisor.clamp_min(1)
        if isinstance(divisor, bool) or not isinstance(divisor, (int, float)):
            raise TypeError("num_items_in_batch must be a number, but got "
                            f"{type(divisor).__name__}")
        return loss_sum * 0.0 if divisor == 0 else loss_sum / divisor

    def loss_func(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        """``Trainer(compute_loss_func=...)``: ``loss`` on the outputs' logits."""
        return self.loss(logits_of(outputs), labels, num_items_in_batch)

    def _note_micro(self, into: list, loss_sum: torch.Tensor, labels: torch.Tensor,
                    shifted: Optional[torch.Tensor] = None) -> None:
        if shifted is None:
            shifted = _C.label_tokens(labels, "shifted", self.ignore_index)
        unshifted = _C.label_tokens(labels, "unshifted", self.ignore_index)
        into.append((loss_sum.detach(), shifted, unshifted))

    def _on_model_forward(self, module, args, kwargs, output) -> None:
        """The forward hook: a training forward pass's num_items_in_batch and, unless loss() is in
        the loss path, its reference sums."""
        if not module.training or not torch.is_grad_enabled():
            return
        if kwargs.get("num_items_in_batch") is not None:
            self._num_items = kwargs["num_items_in_batch"]
        labels = kwargs.get("labels")
        if self._loss_in_use or not isinstance(labels, torch.Tensor):
            return
        fused = fused_head_sums(output)
        if fused is not None:  # the token losses are already there
            self._note_micro(self._hook_micro, fused[0], labels, fused[1])
            return
        shifted = _C.label_tokens(labels, "shifted", self.ignore_index)
        # The model's own loss, when it took the labels, is its token losses' sum over a count the
        # forward pass knows (num_items_in_batch, else this micro-batch's shifted labels): once
        # that is checked against a cross entropy of the logits on a few micro-batches (and again
        # now and then), the sum comes from it and the second pass is saved.
        model_loss = model_loss_of(output)
        count = kwargs.get("num_items_in_batch")
        derived = None
        if model_loss is not None and self._trust_model_loss is not False:
            divisor = count_on(model_loss.device, shifted if count is None else count)
            derived = model_loss.detach().double() * divisor
            self._forward_passes += 1
            if (self._model_loss_checks >= _MODEL_LOSS_CHECKS
                    and self._forward_passes % _MODEL_LOSS_RECHECK_EVERY):
                self._note_micro(self._hook_micro, derived, labels, shifted)
                return
        try:
            logits = logits_of(output)
        except (TypeError, KeyError, AttributeError):
            return  # a model output without logits (a fused loss): no reference from here
        if not isinstance(logits, torch.Tensor) or logits.dim() != labels.dim() + 1:
            return
        with torch.no_grad():
            loss_sum = causal_lm_loss(logits.detach(), labels, ignore_index=self.ignore_index,
                                      reduction="sum")
        self._note_micro(self._hook_micro, loss_sum, labels, shifted)
        if derived is not None:
            self._pending_checks.append((derived.reshape(()), loss_sum.detach().double()))

    def _settle_model_loss_checks(self, values: List[float]) -> None:
        """Judges the step's checks of the model's own loss (pairs of derived and computed sums,
        read with the step's values)."""
        for derived, computed in zip(values[0::2], values[1::2]):
            if abs(derived - computed) <= 1e-4 * abs(computed) + 1e-6:
                self._model_loss_checks += 1
            elif self._trust_model_loss is not False:
                self._trust_model_loss = False
                _log.warning("lossguard: the model's own loss is not its token losses' mean "
                             "(%.6g from it against %.6g from its logits): the reference comes "
                             "from a cross entropy of the logits at every step", derived, computed)
        self._pending_checks.clear()

    # ---- TrainerCallback events --------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.vocab_size is None:
            self.vocab_size = getattr(getattr(model, "config", None), "vocab_size", None)
        if self.collector is None:
            run = self.run or getattr(args, "run_name", None) or os.path.basename(
                os.path.normpath(getattr(args, "output_dir", "") or "hf-run"))
            self.collector = Collector(
                self.server, run, token=self.token, ca_file=self.ca_file,
                spool_dir=self.spool_dir, rank=getattr(args, "process_index", 0),
                world_size=getattr(args, "world_size", 1),
                micro_batch_size=args.per_device_train_batch_size,
                ga_steps=args.gradient_accumulation_steps, vocab_size=self.vocab_size,
                guard=self.guard)
        if (self.guard is not None and getattr(args, "world_size", 1) > 1
                and self.collector.guard_acts):
            raise ValueError("lossguard: a guard policy that acts needs every process to act alike, "
                             "which is not supported with several processes yet; use warn")
        if self.watch_model and self._hook is None and isinstance(model, torch.nn.Module):
            try:
                self._hook = model.register_forward_hook(self._on_model_forward, with_kwargs=True)
            except TypeError:  # torch < 2.0: hooks do not see keyword arguments
                self._hook = None
        self._last_logged_step = state.global_step
        self._clear_step()
        self._steps.clear()
        return control

    def _clear_step(self) -> None:
        self._loss_micro.clear()
        self._hook_micro.clear()
        self._pending_checks.clear()
        self._num_items = None

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None,
                              lr_scheduler=None, **kwargs):
        """With a guard: closes the step's window (with the gradient norm, in the same read) and
        acts on the guard's decision before the optimizer steps."""
        guarded = self.collector is not None and getattr(self.collector, "guarded", False)
        if not guarded or not isinstance(model, torch.nn.Module):
            return control
        step = state.global_step + 1  # the step this update makes
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norm = (torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).double())
                if grads else None)
        extra = self._close_window(step, [] if norm is None else [norm])
        self._closed_step = step
        reference = self._steps[-1]["ref_loss"] if self._steps and self._steps[-1]["step"] == step \
            else 0.0
        decision = self.collector.guard_step(step, reference,
                                             grad_norm=extra[0] if extra else None)
        if decision.action is None:
            return control
        if decision.lr_factor != 1.0:
            scale_learning_rate(optimizer, lr_scheduler, decision.lr_factor)
        if not decision.step_optimizer:
            for p in model.parameters():
                p.grad = None  # optimizer.step() skips parameters without a gradient
        if decision.rollback:
            if not restore_checkpoint(args.output_dir, decision.rollback_to, model, optimizer):
                control.should_training_stop = True
                control.should_save = True
                self.stopped_by = dict(decision.action, action="stop")
        if decision.stop:
            control.should_training_stop = True
            control.should_save = True
            self.stopped_by = decision.action
        return control

    def on_save(self, args, state, control, **kwargs):
        """A checkpoint of the state after ``state.global_step``: a rollback target."""
        if self.collector is not None and getattr(self.collector, "guarded", False):
            self.collector.guard_checkpointed(state.global_step)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        """Closes the step's accumulation window (unless on_pre_optimizer_step did): its reference
        loss over micro-batches (and ranks), in the Trainer's token-count convention."""
        if self._closed_step == state.global_step:
            return control
        self._close_window(state.global_step)
        return control

    def _close_window(self, step: int, extra: Optional[list] = None) -> list:
        """The step's reference from its micro-batches (one collective, one read of the device,
        which also reads the 0-d tensors in ``extra``); returns those values."""
        extra = extra or []
        micro = self._loss_micro or self._hook_micro
        if not micro:
            self._clear_step()
            return torch.stack([e.reshape(()).double() for e in extra]).tolist() if extra else []
        n = len(micro)
        sums = torch.stack([s.double().reshape(()) for s, _, _ in micro])
        device = sums.device
        shifted = torch.stack([t.to(device, torch.float64, non_blocking=True) for _, t, _ in micro])
        unshifted = torch.stack([t.to(device, torch.float64, non_blocking=True)
                                 for _, _, t in micro])
        local = torch.stack([sums.sum(), shifted.sum(), unshifted.sum()])
        total = local.clone()
        if self.all_reduce_reference:
            import torch.distributed as dist
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                dist.all_reduce(total)  # the step's one collective
        num_items = count_on(device, math.nan if self._num_items is None else self._num_items)
        checks = [t.to(device) for pair in self._pending_checks for t in pair]
        extras = [e.reshape(1).to(device, torch.float64) for e in extra]
        # The step's one read from the device.
        values = torch.cat([local, total, num_items.reshape(1), sums, shifted, unshifted,
                            torch.stack(checks) if checks else sums[:0]] + extras).tolist()
        extra_values = values[len(values) - len(extras):]
        values = values[:len(values) - len(extras)]
        self._settle_model_loss_checks(values[7 + 3 * n:])
        local, total, trainer_count = values[0:3], values[3:6], values[6]
        sums = values[7:7 + n]
        counts = {"shifted": values[7 + n:7 + 2 * n], "unshifted": values[7 + 2 * n:7 + 3 * n]}
        convention = trainer_count_convention(trainer_count, local, total)
        column = 1 if convention == "shifted" else 2
        tokens = [int(t) for t in counts[convention]]
        micro_fields = [{"loss": s / t if t else 0.0, "tokens": t, "loss_sum": s}
                        for s, t in zip(sums, tokens)]
        self._steps.append({
            "step": step,
            "ref_loss": total[0] / total[column] if total[column] else 0.0,
            "tokens": sum(tokens),
            "micro": micro_fields,
        })
        self._clear_step()
        return extra_values

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
        """Flushes; a collector this callback made is closed (what is undelivered stays spooled).
        The forward hook is removed."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.collector is not None:
            if self._owns_collector:
                self.collector.close()
                self.collector = None
            else:
                self.collector.flush()
        if self.stopped_by is not None:
            message = ("lossguard's guard stopped training at step "
                       f"{state.global_step}: {self.stopped_by.get('message', '')} (the Trainer "
                       f"saved its checkpoint in {args.output_dir})")
            _log.error("%s", message)
            if self.exit_on_stop:
                raise GuardStopped(message, self.stopped_by)
        return control
