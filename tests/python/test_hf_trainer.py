"""LossguardCallback inside the real Hugging Face Trainer of a current transformers (the project's
environment has 5.x; ctest runs this file again with 4.57 in front): the tiny Llama of hf_tiny
trained on CPU against the real lossguard server, whose alerts are asserted."""

import math
import os
import socket
import subprocess
import sys

import pytest
import torch
import transformers
from transformers import Trainer

import hf_tiny
from lossguard.integrations.hf import LossguardCallback

def train(server, tmp_path, tokenizer, run, *, batch, ga, steps, examples, trainer_cls=Trainer,
          use_loss_func=False, **callback_options):
    cb = LossguardCallback(server.url, run, spool_dir=str(tmp_path / "spool"), **callback_options)
    trainer = trainer_cls(
        model=hf_tiny.llama(seed=0), args=hf_tiny.training_args(tmp_path / run, batch=batch,
                                                                ga=ga, steps=steps),
        train_dataset=examples, data_collator=hf_tiny.PadCollator(tokenizer.pad_token_id),
        callbacks=[cb], compute_loss_func=cb.loss_func if use_loss_func else None)
    trainer.train()
    return trainer


def test_a_correct_trainer_at_ga_1_and_ga_8_trains_alike_and_raises_nothing(server, tmp_path,
                                                                           tokenizer):
    examples = hf_tiny.lm_examples(hf_tiny.sequences(tokenizer, 8 * 12, 8, 48, seed=1))
    runs = {}
    for batch, ga in [(8, 1), (1, 8)]:
        run = f"tf-correct-mb{batch}-ga{ga}"
        runs[run] = train(server, tmp_path, tokenizer, run, batch=batch, ga=ga, steps=12,
                          examples=examples)
        assert server.serious_alerts(run) == []
        records = server.steps(run)
        assert len(records) == 12
        assert all(r["vocab_size"] == hf_tiny.VOCAB_SIZE and "ref_loss" in r for r in records)
        # The callback's reference, from the logits the model already computed, is what a correct
        # Trainer reports.
        for r in records:
            # (transformers 4.x logs the loss rounded to 4 decimals)
            assert float(r["loss"]) == pytest.approx(float(r["ref_loss"]), rel=1e-5, abs=1e-4)
            assert len(r["micro"]) == ga
    (mb8, _), (mb1, _) = runs.items()
    one, eight = (hf_tiny.losses_and_norms(t) for t in runs.values())
    # The Trainer's own gradient-accumulation test allows this much.
    for (loss_a, norm_a), (loss_b, norm_b) in zip(one, eight):
        assert loss_a == pytest.approx(loss_b, rel=1e-3)
        assert norm_a == pytest.approx(norm_b, rel=1e-3)


class CustomLossWithoutNumItems(Trainer):
    """The seed bug: a custom compute_loss that calls the model's loss function per micro-batch
    without num_items_in_batch. The Trainer, told the loss is already scaled for accumulation,
    does not divide by ga_steps: loss and gradients are ga_steps times too large."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                        labels=labels)
        loss = transformers.loss.loss_utils.ForCausalLMLoss(outputs.logits, labels,
                                                            model.config.vocab_size)
        return (loss, outputs) if return_outputs else loss


@pytest.mark.skipif(not hasattr(transformers, "loss"),
                    reason="transformers before 4.46 has no ForCausalLMLoss")
def test_a_custom_compute_loss_without_num_items_is_a_critical_loss_scale_mismatch_of_ga_steps(
        server, tmp_path, tokenizer):
    examples = hf_tiny.lm_examples(hf_tiny.sequences(tokenizer, 8 * 10, 8, 48, seed=2))
    run = "tf-custom-loss-ga8"
    train(server, tmp_path, tokenizer, run, batch=1, ga=8, steps=10, examples=examples,
          trainer_cls=CustomLossWithoutNumItems)
    [alert] = [a for a in server.alerts(run) if a["severity"] == "critical"]
    assert alert["kind"] == "loss_scale_mismatch"
    assert alert["evidence"]["explained_by"] == "ga_steps"
    assert alert["first_step"] <= 3
    assert alert["evidence"]["factor"] == pytest.approx(8, rel=0.05)


def test_the_callbacks_own_loss_with_short_answers_matches_the_trainers_count(server, tmp_path,
                                                                            tokenizer):
    # Short sequences make the Trainer's count convention visible: transformers 4.46-4.5x count
    # each sequence's first label too (never predicted), 10% more at 6-15 labels a sequence.
    examples = hf_tiny.lm_examples(hf_tiny.sequences(tokenizer, 2 * 4 * 10, 7, 16, seed=3))
    run = "tf-loss-func-short-answers"
    train(server, tmp_path, tokenizer, run, batch=2, ga=4, steps=10, examples=examples,
          use_loss_func=True)
    assert server.serious_alerts(run) == []
    for r in server.steps(run):
        assert float(r["loss"]) == pytest.approx(float(r["ref_loss"]), rel=1e-5, abs=1e-4)
        assert math.isfinite(float(r["grad_norm"]))


def test_a_two_rank_gloo_trainer_sends_both_ranks_with_the_all_reduced_reference(server,
                                                                               tmp_path):
    run = "tf-ddp-2-ranks"
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_ddp_train.py")
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(script),
                                                        os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(free_port()), script, server.url,
         run, str(tmp_path / run), str(tmp_path / "spool")],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert server.serious_alerts(run) == []
    records = server.steps(run)
    assert sorted({r["rank"] for r in records}) == [0, 1]
    by_step = {}
    for r in records:
        assert r["world_size"] == 2 and r["ga_steps"] == 2 and r["micro_batch_size"] == 4
        by_step.setdefault(r["step"], {})[r["rank"]] = r
    assert sorted(by_step) == list(range(1, 9))
    for ranks in by_step.values():
        zero, one = ranks[0], ranks[1]
        # Every rank logs the loss gathered over ranks, and the reference is summed over ranks
        # (each rank's tokens are its own).
        assert float(zero["ref_loss"]) == pytest.approx(float(one["ref_loss"]), rel=1e-9)
        assert float(zero["loss"]) == pytest.approx(float(zero["ref_loss"]), rel=1e-5, abs=1e-4)
        assert zero["tokens"] != one["tokens"] or zero["micro"] != one["micro"]
        assert float(zero["grad_norm"]) == pytest.approx(float(one["grad_norm"]), rel=1e-6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InflatedLossLlama(transformers.LlamaForCausalLM):
    """A model whose own loss is not its token losses' mean (1.5x): the callback must not take its
    reference from it."""

    def forward(self, *args, **kwargs):
        outputs = super().forward(*args, **kwargs)
        outputs.loss = outputs.loss * 1.5
        return outputs


def test_a_model_whose_own_loss_is_wrong_is_not_trusted_for_the_reference(server, tmp_path,
                                                                        tokenizer, caplog):
    examples = hf_tiny.lm_examples(hf_tiny.sequences(tokenizer, 2 * 8, 8, 48, seed=4))
    run = "tf-inflated-model-loss"
    cb = LossguardCallback(server.url, run, spool_dir=str(tmp_path / "spool"))
    model = InflatedLossLlama(hf_tiny.llama(seed=0).config)
    trainer = Trainer(model=model, args=hf_tiny.training_args(tmp_path / run, batch=2, ga=1,
                                                              steps=8),
                      train_dataset=examples,
                      data_collator=hf_tiny.PadCollator(tokenizer.pad_token_id), callbacks=[cb])
    with caplog.at_level("WARNING", logger="lossguard"):
        trainer.train()
    assert any("the model's own loss is not its token losses' mean" in r.getMessage()
               for r in caplog.records)
    for r in server.steps(run):
        assert float(r["loss"]) / float(r["ref_loss"]) == pytest.approx(1.5, rel=1e-4)
