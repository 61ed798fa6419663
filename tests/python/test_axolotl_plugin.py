"""LossguardPlugin loaded by Axolotl's own PluginManager (axolotl 0.19.0 from .venv/overlays, its
integrations module with the modules it imports), its callbacks added to a real Trainer the way
Axolotl's trainer builder adds them after creating the trainer, and trained against the real
lossguard server: Axolotl's gradient-accumulation bug (micro-batch means summed without dividing by
ga_steps) is a critical loss_scale_mismatch, and a correct run raises nothing."""

import os

import pytest
from axolotl.integrations.base import BasePlugin, PluginManager
from axolotl.utils.dict import DictDefault
from transformers import Trainer

import hf_tiny

PLUGIN = "lossguard.integrations.axolotl.LossguardPlugin"


class SummedMicroBatchMeans(Trainer):
    """The shape of Axolotl's bug: each micro-batch's mean loss, added up over the accumulation
    steps (the Trainer is told the loss is already scaled for accumulation)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss


def train_with_plugin(server, tmp_path, monkeypatch, tokenizer, run, trainer_cls):
    monkeypatch.setenv("LOSSGUARD_SERVER", server.url)
    monkeypatch.setenv("LOSSGUARD_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.delenv("LOSSGUARD_RUN", raising=False)
    manager = PluginManager.get_instance()
    manager.plugins.clear()
    manager.register(PLUGIN)
    assert isinstance(manager.plugins[PLUGIN], BasePlugin)
    cfg = DictDefault({"plugins": [PLUGIN], "wandb_name": run, "output_dir": str(tmp_path / "out"),
                       "micro_batch_size": 1, "gradient_accumulation_steps": 8})
    examples = hf_tiny.lm_examples(hf_tiny.sequences(tokenizer, 8 * 8, 8, 48, seed=9))
    trainer = trainer_cls(model=hf_tiny.llama(), args=hf_tiny.training_args(
                              tmp_path / run, batch=1, ga=8, steps=8),
                          train_dataset=examples,
                          data_collator=hf_tiny.PadCollator(tokenizer.pad_token_id))
    for callback in manager.add_callbacks_post_trainer(cfg, trainer):
        trainer.add_callback(callback)
    trainer.train()


def test_axolotls_ga_bug_through_the_plugin_is_a_critical_loss_scale_mismatch(
        server, tmp_path, monkeypatch, tokenizer):
    run = "axolotl-ga-bug-mb1-ga8"
    train_with_plugin(server, tmp_path, monkeypatch, tokenizer, run, SummedMicroBatchMeans)
    records = server.steps(run)
    assert all(r["vocab_size"] == hf_tiny.VOCAB_SIZE and "ref_loss" in r for r in records)
    [alert] = [a for a in server.alerts(run) if a["severity"] == "critical"]
    assert alert["kind"] == "loss_scale_mismatch" and alert["first_step"] <= 3
    assert alert["evidence"]["explained_by"] == "ga_steps"
    assert alert["evidence"]["factor"] == pytest.approx(8, rel=0.05)


def test_a_correct_run_through_the_plugin_raises_nothing(server, tmp_path, monkeypatch,
                                                         tokenizer):
    run = "axolotl-correct-mb1-ga8"
    train_with_plugin(server, tmp_path, monkeypatch, tokenizer, run, Trainer)
    assert len(server.steps(run)) == 8
    assert server.serious_alerts(run) == []
