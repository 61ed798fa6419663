"""The guard inside the real Hugging Face Trainer: LossguardCallback(guard=...) acting through the
Trainer's own controls on a tiny Llama trained on CPU against the real lossguard server."""

import math
import os

import pytest
import torch
import transformers
from transformers import Trainer

import hf_tiny
import lossguard
from lossguard.integrations.hf import LossguardCallback


class CustomLossWithoutNumItems(Trainer):
    """The GA bug: a custom compute_loss that takes each micro-batch's mean (no
    num_items_in_batch), which the Trainer does not divide by ga_steps."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                        labels=inputs["labels"])
        return (outputs.loss, outputs) if return_outputs else outputs.loss


class NanAtStep(Trainer):
    """A loss that turns NaN at one optimizer step (a bad batch, an overflow): its gradients are
    NaN too."""
    nan_step = 4

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.state.global_step + 1 == self.nan_step:
            loss = (result[0] if return_outputs else result) * math.nan
            return (loss, result[1]) if return_outputs else loss
        return result


def make_trainer(server_url, tmp_path, tokenizer, run, *, trainer_cls, guard, steps, batch=1,
                 ga=4, seed=4, **args):
    examples = hf_tiny.lm_examples(hf_tiny.sequences(tokenizer, batch * ga * steps, 8, 32,
                                                     seed=seed))
    cb = LossguardCallback(server_url, run, spool_dir=str(tmp_path / "spool"), guard=guard)
    trainer = trainer_cls(
        model=hf_tiny.llama(seed=0),
        args=hf_tiny.training_args(tmp_path / run, batch=batch, ga=ga, steps=steps, **args),
        train_dataset=examples, data_collator=hf_tiny.PadCollator(tokenizer.pad_token_id),
        callbacks=[cb])
    return trainer, cb


def test_the_ga_bug_with_stop_saves_a_checkpoint_and_ends_with_the_stop_status(server, tmp_path,
                                                                              tokenizer):
    run = "hf-guard-stop"
    trainer, _ = make_trainer(server.url, tmp_path, tokenizer, run,
                              trainer_cls=CustomLossWithoutNumItems, steps=40,
                              guard={"loss_scale_mismatch": "stop"})
    with pytest.raises(lossguard.GuardStopped) as stopped:
        trainer.train()
    assert stopped.value.code == lossguard.STOP_EXIT_CODE
    assert "loss_scale_mismatch" in str(stopped.value)
    step = trainer.state.global_step
    assert step < 40
    assert os.path.isdir(tmp_path / run / f"checkpoint-{step}"), "the Trainer's own checkpoint"
    records = server.steps(run)
    last = records[-1]
    assert last["step"] == step and last["guard"]["action"] == "stop"
    # The server's verdict (the local path has no trainer loss before the step in HF).
    assert last["guard"]["source"] == "server"
    assert last["step"] - last["guard"]["seen_through"] <= 3
    [alert] = [a for a in server.alerts(run) if a["kind"] == "loss_scale_mismatch"]
    assert [a["action"] for a in alert["actions"]] == ["stop"]


def test_with_warn_the_ga_bug_trains_to_the_end(server, tmp_path, tokenizer):
    run = "hf-guard-warn"
    trainer, cb = make_trainer(server.url, tmp_path, tokenizer, run,
                               trainer_cls=CustomLossWithoutNumItems, steps=12,
                               guard={"loss_scale_mismatch": "warn"})
    trainer.train()
    assert trainer.state.global_step == 12 and cb.stopped_by is None
    assert [r["guard"]["action"] for r in server.steps(run) if "guard" in r] == ["warn"]


def test_a_nan_step_is_skipped_before_the_optimizer_without_the_server(tmp_path, tokenizer):
    run = "hf-guard-nan"
    trainer, _ = make_trainer("http://127.0.0.1:1", tmp_path, tokenizer, run,
                              trainer_cls=NanAtStep, steps=10,
                              guard={"nonfinite": "skip_step"})
    trainer.train()
    assert trainer.state.global_step == 10, "training went on"
    for name, parameter in trainer.model.named_parameters():
        assert torch.isfinite(parameter).all(), name
    grad_norms = [e.get("grad_norm") for e in trainer.state.log_history if "loss" in e]
    assert math.isnan(grad_norms[NanAtStep.nan_step - 1])
    assert all(math.isfinite(g) for i, g in enumerate(grad_norms) if i != NanAtStep.nan_step - 1)


def test_without_the_guard_the_nan_step_reaches_the_weights(tmp_path, tokenizer):
    trainer, _ = make_trainer("http://127.0.0.1:1", tmp_path, tokenizer, "hf-unguarded-nan",
                              trainer_cls=NanAtStep, steps=6, guard=None)
    trainer.train()
    assert not all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_a_rollback_restores_the_last_checkpoint_before_the_episode(tmp_path, tokenizer):
    run = "hf-guard-rollback"
    NanAtStep.nan_step = 8
    try:
        trainer, cb = make_trainer("http://127.0.0.1:1", tmp_path, tokenizer, run,
                                   trainer_cls=NanAtStep, steps=12,
                                   guard="nonfinite=rollback", save_strategy="steps",
                                   save_steps=5)
        trainer.train()
    finally:
        NanAtStep.nan_step = 4
    assert trainer.state.global_step == 12 and cb.stopped_by is None
    for parameter in trainer.model.parameters():
        assert torch.isfinite(parameter).all()
    spool = tmp_path / "spool" / run / "rank-0.ndjson"
    import json
    records = [json.loads(line) for line in spool.read_text().splitlines() if line.strip()]
    [action] = [r["guard"] for r in records if "guard" in r]
    assert action["action"] == "rollback" and action["rollback_to"] == 5


def test_lower_lr_scales_the_schedulers_learning_rate_from_that_step(tmp_path, tokenizer):
    trainer, _ = make_trainer("http://127.0.0.1:1", tmp_path, tokenizer, "hf-guard-lr",
                              trainer_cls=NanAtStep, steps=8,
                              guard="nonfinite=lower_lr:0.5,max_lr_lowerings=1")
    trainer.train()
    rates = [e["learning_rate"] for e in trainer.state.log_history if "loss" in e]
    assert rates[NanAtStep.nan_step - 1] == pytest.approx(1e-3)
    assert rates[NanAtStep.nan_step:] == pytest.approx([5e-4] * (8 - NanAtStep.nan_step))
