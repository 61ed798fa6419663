"""lossguard.integrations.hf driven by hand as the Hugging Face Trainer drives a callback, without
transformers (Debian's python3 has none; the real Trainer is test_hf_trainer*.py's): the event order
of Trainer._inner_training_loop in transformers 4.46-4.5x, and the log_history entries of a
trainer_state.json."""

import json
import os
from types import SimpleNamespace

import pytest
import torch

import lossguard
import tiny_lm
from lossguard.integrations.hf import LossguardCallback

FIXTURES = os.environ.get("LOSSGUARD_FIXTURES",
                          os.path.join(os.path.dirname(__file__), "..", "fixtures"))


def training_args(ga=1, batch=2, logging_steps=1, world_size=1, process_index=0, run_name=None):
    # The TrainingArguments attributes the callback reads.
    return SimpleNamespace(gradient_accumulation_steps=ga, per_device_train_batch_size=batch,
                           logging_steps=logging_steps, world_size=world_size,
                           process_index=process_index, run_name=run_name,
                           output_dir="/tmp/out/my-hf-run")


def test_log_history_of_a_trainer_state_becomes_one_record_per_logged_step(server, tmp_path):
    with open(os.path.join(FIXTURES, "trainer_state_ga_bug.json")) as f:
        history = json.load(f)["log_history"]
    training = [entry for entry in history if "loss" in entry]
    args = training_args(ga=8, batch=1, world_size=1)
    state = SimpleNamespace(global_step=0, log_history=[])
    control = SimpleNamespace()
    cb = LossguardCallback(server.url, "hf-history", spool_dir=str(tmp_path), vocab_size=32000)
    cb.on_init_end(args, state, control)
    cb.on_train_begin(args, state, control)
    for entry in training:
        cb.on_step_begin(args, state, control)
        for _ in range(args.gradient_accumulation_steps - 1):
            cb.on_substep_end(args, state, control)
        cb.on_pre_optimizer_step(args, state, control)
        cb.on_optimizer_step(args, state, control)
        state.global_step = entry["step"]
        cb.on_step_end(args, state, control)
        logs = {k: v for k, v in entry.items() if k != "step"}
        cb.on_log(args, state, control, logs=logs)
        # Evaluation and the end-of-training summary carry no "loss": no record.
        cb.on_log(args, state, control, logs={"eval_loss": 1.0, "epoch": entry["epoch"]})
    cb.on_log(args, state, control, logs={"train_runtime": 12.0, "train_loss": 50.0})
    cb.on_train_end(args, state, control)

    records = server.steps("hf-history")
    assert [r["step"] for r in records] == [e["step"] for e in training]
    for record, entry in zip(records, training):
        for ours, theirs in [("loss", "loss"), ("grad_norm", "grad_norm"), ("lr", "learning_rate")]:
            # NaN is data (the fixture has a NaN loss); the wire format writes it as "NaN".
            assert float(record[ours]) == pytest.approx(entry[theirs], nan_ok=True)
        assert (record["ga_steps"], record["micro_batch_size"], record["world_size"]) == (8, 1, 1)
        assert record["vocab_size"] == 32000 and "ref_loss" not in record


def run_trainer_loop(cb, args, steps, buggy=False):
    """The Trainer's loop over a tiny model, with the loss through the callback's loss_func (as
    compute_loss_func): per micro-batch, the loss with num_items_in_batch (the step's label
    tokens, unshifted as transformers 4.46-4.5x count them) and tr_loss accumulated as the Trainer
    does.
    buggy: the pre-4.46 behaviour a custom compute_loss can bring back: the micro-batch mean,
    not divided by gradient_accumulation_steps."""
    ids, labels = tiny_lm.sequences(n=steps * args.gradient_accumulation_steps * 2)
    net = tiny_lm.model()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    state, control = SimpleNamespace(global_step=0), SimpleNamespace()
    expected = []  # each step's loss summed over its tokens / num_items, as a correct Trainer
    cb.on_train_begin(args, state, control)
    tr_loss, logged_from = 0.0, 0
    micro = list(zip(ids.split(args.per_device_train_batch_size),
                     labels.split(args.per_device_train_batch_size)))
    for step in range(steps):
        window = micro[step * args.gradient_accumulation_steps:(step + 1) * args.gradient_accumulation_steps]
        num_items = torch.tensor(sum(int((y != -100).sum()) for _, y in window))
        cb.on_step_begin(args, state, control)
        with torch.no_grad():
            all_ids = torch.cat([x for x, _ in window])
            all_labels = torch.cat([y for _, y in window])
            total = lossguard.causal_lm_loss(net(all_ids), all_labels, reduction="sum")
            expected.append(total.item() / int(num_items))
        for i, (x, y) in enumerate(window):
            outputs = {"logits": net(x)}
            if buggy:
                loss = cb.loss_func(outputs, y)  # no num_items: the micro-batch mean
            else:
                loss = cb.loss_func(outputs, y, num_items_in_batch=num_items)
            loss.backward()
            tr_loss += loss.item()
            if i < len(window) - 1:
                cb.on_substep_end(args, state, control)
        optimizer.step()
        optimizer.zero_grad()
        state.global_step += 1
        cb.on_step_end(args, state, control)
        if state.global_step % args.logging_steps == 0:
            steps_logged = state.global_step - logged_from
            cb.on_log(args, state, control, logs={"loss": round(tr_loss / steps_logged, 4),
                                                  "grad_norm": 1.0, "learning_rate": 0.1})
            tr_loss, logged_from = 0.0, state.global_step
    cb.on_train_end(args, state, control)
    return expected


def test_loss_func_gives_records_the_reference_loss_and_micro_batches(server, tmp_path):
    args = training_args(ga=4, batch=2, logging_steps=1, run_name="hf-full")
    cb = LossguardCallback(server.url, spool_dir=str(tmp_path))
    expected = run_trainer_loop(cb, args, steps=5)
    records = server.steps("hf-full")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    for record, correct in zip(records, expected):
        assert record["ref_loss"] == pytest.approx(correct, rel=1e-5)
        assert len(record["micro"]) == 4
        # Counted as this Trainer counts num_items (every label, before the shift), so that its
        # correct loss (logged to 4 decimals) is the reference.
        assert record["tokens"] == sum(m["tokens"] for m in record["micro"])
        assert record["loss"] == pytest.approx(record["ref_loss"], abs=1e-4)


def test_sparse_logging_pairs_the_averaged_loss_with_the_mean_reference(server, tmp_path):
    args = training_args(ga=2, batch=2, logging_steps=3, run_name="hf-sparse")
    cb = LossguardCallback(server.url, spool_dir=str(tmp_path))
    expected = run_trainer_loop(cb, args, steps=6)
    records = server.steps("hf-sparse")
    assert [r["step"] for r in records] == [3, 6]
    for record, interval in zip(records, [expected[0:3], expected[3:6]]):
        assert record["ref_loss"] == pytest.approx(sum(interval) / 3, rel=1e-5)
        assert "micro" not in record  # per-micro-batch data only for steps logged one at a time


def test_the_ga_bug_through_the_trainer_shows_as_a_ga_sized_loss_ratio(server, tmp_path):
    args = training_args(ga=4, batch=1, logging_steps=1, run_name="hf-bug")
    cb = LossguardCallback(server.url, spool_dir=str(tmp_path))
    run_trainer_loop(cb, args, steps=4, buggy=True)
    for record in server.steps("hf-bug"):
        ratio = record["loss"] / record["ref_loss"]
        assert 3 < ratio < 5, ratio  # micro-batch means summed over GA 4, not their token mean


def test_a_callback_without_transformers_has_the_trainer_callback_interface():
    # The method names and signatures of transformers.TrainerCallback (4.46-4.5x).
    events = ["on_init_end", "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_step_begin", "on_pre_optimizer_step", "on_optimizer_step", "on_substep_end",
              "on_step_end", "on_evaluate", "on_predict", "on_save", "on_log",
              "on_prediction_step"]
    import inspect
    for name in events:
        params = list(inspect.signature(getattr(LossguardCallback, name)).parameters)
        assert params[:4] == ["self", "args", "state", "control"], name


def test_the_axolotl_plugin_attaches_a_callback_configured_from_the_environment(monkeypatch):
    from lossguard.integrations.axolotl import LossguardPlugin

    monkeypatch.setenv("LOSSGUARD_SERVER", "http://127.0.0.1:9")
    monkeypatch.delenv("LOSSGUARD_RUN", raising=False)
    plugin = LossguardPlugin()  # Axolotl instantiates plugins without arguments
    [cb] = plugin.add_callbacks_post_trainer({"output_dir": "./outputs/llama-lora/"}, trainer=None)
    assert isinstance(cb, LossguardCallback)
    assert cb.server == "http://127.0.0.1:9" and cb.run == "llama-lora"
    monkeypatch.setenv("LOSSGUARD_RUN", "named")
    [cb] = plugin.add_callbacks_post_trainer(SimpleNamespace(wandb_name="w", output_dir="o"), None)
    assert cb.run == "named"
