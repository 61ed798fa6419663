"""LossguardCallback inside TRL's SFTTrainer (the version pinned in the project's environment): the
tiny Llama of hf_tiny fine-tuned on pre-tokenized variable-length text against the real lossguard
server."""

import pytest
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

import hf_tiny
from lossguard.integrations.hf import LossguardCallback


@pytest.fixture(scope="module")
def dataset(tokenizer):
    seqs = hf_tiny.sequences(tokenizer, 8 * 10, 8, 48, seed=7)
    return Dataset.from_dict({"input_ids": seqs})


class PerMicroBatchMeanSFTTrainer(SFTTrainer):
    """A custom compute_loss that returns each micro-batch's own mean (the model's loss without
    num_items_in_batch), as in TRL issue 2175: the Trainer, told the loss is scaled for
    accumulation, adds ga_steps of them up."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss


def train(server, tmp_path, tokenizer, dataset, run, *, batch, ga, trainer_cls=SFTTrainer):
    cb = LossguardCallback(server.url, run, spool_dir=str(tmp_path / "spool"))
    args = hf_tiny.training_args(tmp_path / run, batch=batch, ga=ga, steps=10,
                                 args_cls=SFTConfig, max_length=64, packing=False)
    trainer = trainer_cls(model=hf_tiny.llama(), args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[cb])
    trainer.train()
    return trainer


def test_sft_trainer_at_ga_1_and_ga_8_raises_nothing_and_matches_the_reference(
        server, tmp_path, tokenizer, dataset):
    for batch, ga in [(8, 1), (1, 8)]:
        run = f"trl-sft-mb{batch}-ga{ga}"
        train(server, tmp_path, tokenizer, dataset, run, batch=batch, ga=ga)
        assert server.serious_alerts(run) == []
        records = server.steps(run)
        assert len(records) == 10
        for r in records:
            assert float(r["loss"]) == pytest.approx(float(r["ref_loss"]), rel=1e-5, abs=1e-4)


def test_sft_trainer_with_a_per_micro_batch_mean_loss_is_flagged(server, tmp_path, tokenizer,
                                                                 dataset):
    run = "trl-sft-mean-loss-ga8"
    train(server, tmp_path, tokenizer, dataset, run, batch=1, ga=8,
          trainer_cls=PerMicroBatchMeanSFTTrainer)
    [alert] = [a for a in server.alerts(run) if a["severity"] == "critical"]
    assert alert["kind"] == "loss_scale_mismatch"
    assert alert["evidence"]["explained_by"] == "ga_steps"
