"""LossguardCallback inside released Trainers that shipped loss bugs (ctest runs this file with
transformers 4.45.2 and 4.46.0 from .venv/overlays in front of the environment): what each bug looks
like to the real lossguard server.

- 4.45.x, before the gradient-accumulation fix: the loss of a step is the mean of its micro-batch
  means, so short sequences weigh as much as long ones.
- 4.46.0: a model whose forward takes no loss kwargs (GPT-2 there) gets its micro-batch mean
  loss multiplied back by ga_steps and never divided again: loss and gradients ga_steps times too
  large (fixed in 4.46.2)."""

import pytest
import transformers
from transformers import Trainer

import hf_tiny
from lossguard.integrations.hf import LossguardCallback

VERSION = tuple(int(part) for part in transformers.__version__.split(".")[:2])
PATCH = transformers.__version__


def train(server, tmp_path, tokenizer, run, model, *, batch, ga, steps, examples, lr=1e-3):
    cb = LossguardCallback(server.url, run, spool_dir=str(tmp_path / "spool"))
    trainer = Trainer(model=model, args=hf_tiny.training_args(tmp_path / run, batch=batch, ga=ga,
                                                              steps=steps, lr=lr),
                      train_dataset=examples,
                      data_collator=hf_tiny.PadCollator(tokenizer.pad_token_id), callbacks=[cb])
    trainer.train()
    return trainer


@pytest.mark.skipif(VERSION != (4, 45), reason=f"the mean-of-means Trainer is 4.45, not {PATCH}")
def test_before_the_fix_micro_batch_1_ga_8_is_a_token_weighting_bias_and_batch_8_ga_1_is_clean(
        server, tmp_path, tokenizer):
    # Sequences of 4 to 60 tokens: micro-batch means weigh them very differently from tokens.
    examples = hf_tiny.lm_examples(hf_tiny.sequences(tokenizer, 8 * 24, 4, 60, seed=5))
    train(server, tmp_path, tokenizer, "tf445-mb1-ga8", hf_tiny.llama(), batch=1, ga=8, steps=24,
          examples=examples, lr=3e-3)
    alerts = server.alerts("tf445-mb1-ga8")
    assert server.serious_alerts("tf445-mb1-ga8") == [("token_weighting_bias", "warning")], alerts
    train(server, tmp_path, tokenizer, "tf445-mb8-ga1", hf_tiny.llama(), batch=8, ga=1, steps=24,
          examples=examples, lr=3e-3)
    assert server.serious_alerts("tf445-mb8-ga1") == []


@pytest.mark.skipif(PATCH != "4.46.0", reason=f"the loss x GA regression is 4.46.0, not {PATCH}")
def test_the_4_46_0_regression_is_a_critical_loss_scale_mismatch_of_ga_steps(server, tmp_path,
                                                                           tokenizer):
    examples = hf_tiny.lm_examples(hf_tiny.sequences(tokenizer, 8 * 10, 8, 48, seed=6))
    train(server, tmp_path, tokenizer, "tf4460-gpt2-ga8", hf_tiny.gpt2(), batch=1, ga=8, steps=10,
          examples=examples)
    [alert] = [a for a in server.alerts("tf4460-gpt2-ga8") if a["severity"] == "critical"]
    assert alert["kind"] == "loss_scale_mismatch" and alert["first_step"] <= 3
    assert alert["evidence"]["explained_by"] == "ga_steps"
    assert alert["evidence"]["factor"] == pytest.approx(8, rel=0.05)
    # Llama takes the loss kwargs in 4.46.0: the same Trainer normalises it correctly.
    train(server, tmp_path, tokenizer, "tf4460-llama-ga8", hf_tiny.llama(), batch=1, ga=8,
          steps=10, examples=examples)
    assert server.serious_alerts("tf4460-llama-ga8") == []
