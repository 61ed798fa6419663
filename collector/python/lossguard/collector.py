"""Streaming optimizer-step records to a lossguard server from a Python training loop."""

import atexit
import functools
import logging
import os
import weakref
from typing import Optional

from lossguard import _C
from lossguard.guard import GuardDecision, Policy, policy_spec

_log = logging.getLogger("lossguard")


def _distributed_rank_and_size():
    try:
        import torch.distributed as dist
    except ImportError:
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Collector:
    """Hands each optimizer step's record to lossguard's C++ record stream, which delivers it to the
    server on a background thread: batched, retried with backoff, spooled to disk while the server
    is unreachable and replayed in order (exactly once, as the server counts records by run, step
    and rank), also by the next collector of the same run and rank, or by ``lossguard flush``.

    ``record_step`` never blocks on the network or the disk, and nothing the server or the disk does
    raises from it: failures are counted in ``stats()`` and logged on the ``lossguard`` logger (from
    the thread that calls record_step, flush or close). Only a record the server would refuse
    raises, at the call (ValueError, naming the field).

    server: "http://HOST:PORT" or "https://HOST:PORT" (the certificate is verified); None or ""
        records nothing remotely (local checks only).
    run: the run's name, [A-Za-z0-9._:-], 1-128 characters.
    token: the server's write token (default: $LOSSGUARD_TOKEN).
    ca_file: for https, a PEM file of the certificate authorities to trust instead of the system's
        (default: $LOSSGUARD_CA_FILE).
    spool_dir: where records wait during an outage, as <spool_dir>/<run>/rank-<rank>.ndjson.
        None: $LOSSGUARD_SPOOL_DIR, else ~/.local/state/lossguard/spool (streaming goes on from
        memory if it cannot be used); "": no spool (an outage longer than the queue loses records).
    rank, world_size: default to torch.distributed's when it is initialised, else 0 and 1.
    micro_batch_size, ga_steps, vocab_size: written into every record unless record_step says
        otherwise (an AccumulationWindow supplies ga_steps and world_size).
    drain_timeout: how long close() (also at interpreter exit) waits for delivery before leaving
        the rest in the spool.
    The trainer's log warns when a reported loss and its ref_loss disagree (the C++ local check).
    guard: a policy (lossguard.guard: a str, or a mapping such as {"loss_scale_mismatch": "stop",
        "nonfinite": "skip_step"}) to act on verdicts: call guard_step before each optimizer step.
        Records are then sent as they come, so that the server's verdicts return within a step
        or two.

    Not thread-safe: call record_step from the training loop. A context manager: leaving it flushes
    and closes, as close() does; collectors still open at interpreter exit are closed then.
    """

    def __init__(self, server: Optional[str], run: str, *, token: Optional[str] = None,
                 ca_file: Optional[str] = None, spool_dir: Optional[str] = None, rank: Optional[int] = None,
                 world_size: Optional[int] = None, micro_batch_size: int = 1,
                 ga_steps: int = 1, vocab_size: Optional[int] = None,
                 queue_capacity: int = 16384, batch_size: int = 512,
                 flush_interval: float = 0.5, request_timeout: float = 10.0,
                 drain_timeout: float = 10.0, spool_retry_interval: float = 10.0,
                 logger: Optional[logging.Logger] = None, guard: Optional[Policy] = None):
        if not isinstance(run, str):
            raise TypeError(f"run must be a str, but got {type(run).__name__}")
        for name, value in [("queue_capacity", queue_capacity), ("batch_size", batch_size),
                            ("micro_batch_size", micro_batch_size), ("ga_steps", ga_steps)]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, but got {value!r}")
        default_rank, default_world_size = _distributed_rank_and_size()
        rank = default_rank if rank is None else rank
        self._log = logger or _log
        if token is None:
            token = os.environ.get("LOSSGUARD_TOKEN", "")
        if ca_file is None:
            ca_file = os.environ.get("LOSSGUARD_CA_FILE", "")
        self._c = _C.Collector(server or "", run, token, ca_file, spool_dir, rank,
                               default_world_size if world_size is None else world_size,
                               micro_batch_size, ga_steps, vocab_size, queue_capacity, batch_size,
                               flush_interval, request_timeout, drain_timeout,
                               spool_retry_interval, functools.partial(_log_messages, self._log),
                               None if guard is None else policy_spec(guard))
        self.guarded = guard is not None
        # The hot path straight to C++: no Python frame per optimizer step.
        self.record_step = self._c.record_step
        self.run = run
        self._drain_timeout = drain_timeout
        self._spool_path = self._c.spool_path
        _open_collectors.add(self)

    def record_step(self, step: int, loss, *, window=None, **fields) -> bool:
        """Hands the record of optimizer step ``step`` over and returns at once.

        loss: the loss as the trainer reports it (a float or a 0-d tensor; NaN and Inf are data).
        window: an AccumulationWindow whose micro-batch losses were computed: it supplies ref_loss,
            tokens, micro, ga_steps and world_size (reading its reference loss is a collective).
        fields: any other wire-format v1 field by its name (grad_norm, lr, tokens, ref_loss,
            micro=[{"loss", "tokens", "loss_sum"}], nonfinite_grads, vocab_size, time, ...); unknown
            names are kept by the server as they are. ``time`` defaults to now.

        Returns False when the in-memory queue was full and the record was dropped (counted in
        stats()["dropped"] and logged). Raises ValueError for a record the server would refuse
        (a negative step, a ga_steps < 1, ...), for run or rank (set when creating the collector),
        for window fields given twice, and after close(); TypeError for a value that is not a
        number, str, bool, None, list or dict.

        (Each Collector's record_step is the C++ method itself, bound in __init__: this one only
        documents it and serves a subclass that calls super().)
        """
        return self._c.record_step(step, loss, window=window, **fields)

    def guard_step(self, step: int, loss, *, ref_loss=None, grad_norm=None,
                   nonfinite_grads: Optional[int] = None) -> GuardDecision:
        """Before optimizer.step(): the guard's decision for ``step`` from the step's own signals
        (a non-finite loss or grad_norm; loss against ref_loss) and the run's latest server
        verdicts. Its action goes into the record of the same step (record_step). Numbers may be
        0-d tensors (read once each). ValueError without a guard policy."""
        if not self.guarded:
            raise ValueError("lossguard: this collector has no guard policy (Collector(guard=...))")
        decision = self._c.guard_step(step, _number(loss), _optional_number(ref_loss),
                                      _optional_number(grad_norm), nonfinite_grads)
        return GuardDecision(**decision)

    def guard_checkpointed(self, step: int) -> None:
        """A checkpoint of the state after ``step`` exists: a rollback target."""
        self._c.guard_checkpointed(step)

    def guard_checkpoint_removed(self, step: int) -> None:
        self._c.guard_checkpoint_removed(step)

    @property
    def guard_acts(self) -> bool:
        """Whether the guard policy asks for more than warnings."""
        return self.guarded and self._c.guard_acts

    @property
    def lr_scale(self) -> float:
        """The product of the guard's learning-rate factors so far (1.0 without a guard)."""
        return self._c.guard_lr_scale if self.guarded else 1.0

    def flush(self, timeout: float = 30.0) -> bool:
        """Waits up to ``timeout`` seconds until every record handed over so far is delivered (or
        refused, or counted as dropped) and the spool is empty. False on timeout: the records are
        still queued or spooled, not lost."""
        return self._c.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> bool:
        """Flushes for up to ``timeout`` seconds (default: the drain_timeout given at creation, 10 s),
        then stops the stream (what is still undelivered stays in the spool for the next start or
        ``lossguard flush``). True when everything was delivered. Closing twice is harmless."""
        if self._c.closed:
            return True
        try:
            delivered = self._c.flush(self._drain_timeout if timeout is None else timeout)
            self._c.close()
            if not delivered:
                where = self._spool_path or "nowhere (no spool: the rest is lost)"
                self._log.warning("lossguard: run %s: not every record reached the server; the rest "
                                  "waits in %s", self.run, where)
            return delivered
        finally:
            _open_collectors.discard(self)

    def stats(self) -> dict:
        """The stream's counters since creation: submitted, delivered, spooled, dropped, rejected,
        failed_requests, spool_errors (empty without a server). After close(), as close() found
        them before stopping the stream."""
        return self._c.stats()

    @property
    def spool_path(self) -> str:
        """The spool file in use ("" for none)."""
        return self._spool_path

    @property
    def closed(self) -> bool:
        return self._c.closed

    def __enter__(self) -> "Collector":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()



def _number(value) -> float:
    return float(value.item()) if hasattr(value, "item") else float(value)


def _optional_number(value) -> Optional[float]:
    return None if value is None else _number(value)


def _log_messages(logger: logging.Logger, messages) -> None:
    for message in messages:
        logger.warning("%s", message)


_open_collectors: "weakref.WeakSet[Collector]" = weakref.WeakSet()


@atexit.register
def _close_open_collectors() -> None:
    for collector in list(_open_collectors):
        collector.close()
