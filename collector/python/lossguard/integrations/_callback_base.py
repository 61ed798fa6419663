"""The callback's base class: transformers.TrainerCallback, or without transformers a class with
the same events (each doing nothing), so that the callback can be imported and driven by hand."""

# transformers.TrainerCallback's events (4.45-5.x); each takes (args, state, control, **kwargs).
_TRAINER_EVENTS = (
    "on_init_end", "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_step_begin", "on_pre_optimizer_step", "on_optimizer_step", "on_substep_end", "on_step_end",
    "on_evaluate", "on_predict", "on_save", "on_log", "on_prediction_step")

try:  # the base class when transformers is there
    from transformers import TrainerCallback as CallbackBase
except ImportError:  # pragma: no cover - depends on the machine

    class CallbackBase:
        """transformers.TrainerCallback's interface without transformers: every event, doing
        nothing."""

    def _ignore_event(self, args, state, control, **kwargs):
        return control

    for _event in _TRAINER_EVENTS:
        setattr(CallbackBase, _event, _ignore_event)
