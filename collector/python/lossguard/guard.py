"""The guard: what a training loop does about lossguard's verdicts (stop, skip the step, roll back,
lower the learning rate), judged in lossguard's C++ collector.

A policy maps alert kinds (and a severity) to responses, in one format for every front end::

    "loss_scale_mismatch=stop, nonfinite=skip_step, grad_explosion:warning=lower_lr:0.5"
    {"loss_scale_mismatch": "stop", "grad_explosion:warning": "lower_lr:0.5", "max_rollbacks": 2}

or the same keys in a TOML table (``policy_from_toml``). Responses: warn (the default: a log line),
lower_lr[:factor], skip_step, rollback, stop. Bounds: max_rollbacks (3), max_lr_lowerings (3),
max_consecutive_skips (10); ``local=off`` acts on server verdicts only.
"""
import os
from dataclasses import dataclass
from typing import Mapping, Optional, Union

from lossguard import _C

#: The exit status of a run the guard stopped (distinct from a crash's 1 and a usage error's 2).
STOP_EXIT_CODE = _C.GUARD_STOP_EXIT_CODE

Policy = Union[str, Mapping[str, object]]


def policy_spec(policy: Policy) -> str:
    """The policy as the C++ parser reads it: a string as it is, a mapping as KEY=VALUE entries
    (``local`` may be a bool). The parser validates it (ValueError naming the entry)."""
    if isinstance(policy, str):
        return policy
    if isinstance(policy, Mapping):
        entries = []
        for key, value in policy.items():
            if not isinstance(key, str):
                raise TypeError(f"guard policy keys are str, but got {key!r}")
            if isinstance(value, bool):
                value = "on" if value else "off"
            if not isinstance(value, (str, int, float)):
                raise TypeError(f"guard policy {key!r}: expected a str or a number, but got "
                                f"{type(value).__name__}")
            entries.append(f"{key}={value}")
        return ",".join(entries)
    raise TypeError(f"a guard policy is a str or a mapping, but got {type(policy).__name__}")


def policy_from_toml(path: Union[str, os.PathLike], table: str = "guard") -> dict:
    """The ``[guard]`` table (or ``table``) of a TOML file, as a policy mapping."""
    import tomllib  # Python >= 3.11

    with open(path, "rb") as file:
        document = tomllib.load(file)
    if table not in document or not isinstance(document[table], dict):
        raise ValueError(f"{path}: no [{table}] table")
    return document[table]


@dataclass(frozen=True)
class GuardDecision:
    """What to do at this step. ``action`` (a dict, the record's "guard" field) is set when a
    verdict was acted on, warn included."""
    response: str
    action: Optional[dict]
    lr_factor: float
    rollback_to: Optional[int]
    step_optimizer: bool
    stop: bool
    rollback: bool


class GuardStopped(SystemExit):
    """Raised when training ends because the guard said stop: exits with STOP_EXIT_CODE unless
    caught. ``action`` is the guard's record field."""

    def __init__(self, message: str, action: Optional[dict] = None):
        super().__init__(STOP_EXIT_CODE)
        self.message = message
        self.action = action

    def __str__(self) -> str:
        return self.message
