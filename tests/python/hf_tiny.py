"""A tiny causal-LM world for tests inside the real Hugging Face libraries, all made locally (no hub:
HF_HUB_OFFLINE=1): English text from a Debian package (the GPL-3 that base-files ships), a
byte-pair tokenizer trained on it with `tokenizers`, variable-length sequences cut from it, and
2-layer models built from a config. Works with transformers 4.45 to 5.x."""

import os
import random
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: E402

CORPUS = "/usr/share/common-licenses/GPL-3"
VOCAB_SIZE = 512


def corpus_text() -> str:
    with open(CORPUS, encoding="utf-8") as f:
        return f.read()


def make_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A BPE tokenizer of VOCAB_SIZE tokens trained on the corpus (a second or so)."""
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=["<pad>", "<unk>", "<s>"],
                                  show_progress=False)
    bpe.train_from_iterator(corpus_text().splitlines(), trainer=trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>",
                                                unk_token="<unk>", bos_token="<s>",
                                                eos_token="<s>")


def sequences(tokenizer, count: int, min_len: int, max_len: int, seed: int):
    """`count` token sequences of lengths drawn from [min_len, max_len], cut from consecutive
    sentences of the corpus."""
    ids = tokenizer(re.sub(r"\s+", " ", corpus_text()))["input_ids"]
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        length = rng.randint(min_len, max_len)
        start = rng.randrange(0, len(ids) - length)
        out.append(ids[start:start + length])
    return out


def lm_examples(seqs):
    """Pre-training examples: every token is a label."""
    return [{"input_ids": s, "labels": list(s)} for s in seqs]


def sft_examples(seqs, answer_min: int, answer_max: int, seed: int):
    """Supervised fine-tuning examples: only the last answer_min..answer_max tokens are labels
    (the prompt is ignore_index)."""
    rng = random.Random(seed)
    out = []
    for s in seqs:
        answer = min(len(s) - 1, rng.randint(answer_min, answer_max))
        out.append({"input_ids": s, "labels": [-100] * (len(s) - answer) + s[len(s) - answer:]})
    return out


class PadCollator:
    """Right-pads input_ids with the pad token and labels with -100, with an attention mask."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, examples):
        width = max(len(e["input_ids"]) for e in examples)
        ids, labels, mask = [], [], []
        for e in examples:
            pad = width - len(e["input_ids"])
            ids.append(list(e["input_ids"]) + [self.pad_id] * pad)
            labels.append(list(e["labels"]) + [-100] * pad)
            mask.append([1] * len(e["input_ids"]) + [0] * pad)
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "attention_mask": torch.tensor(mask)}


def llama(seed: int = 0, vocab_size: int = VOCAB_SIZE):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=4, max_position_embeddings=256)
    return transformers.LlamaForCausalLM(config)


def gpt2(seed: int = 0, vocab_size: int = VOCAB_SIZE):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=vocab_size, n_embd=64, n_layer=2, n_head=4,
                                     n_positions=256, resid_pdrop=0.0, embd_pdrop=0.0,
                                     attn_pdrop=0.0)
    return transformers.GPT2LMHeadModel(config)


def training_args(output_dir, *, batch: int, ga: int, steps: int, seed: int = 0,
                  lr: float = 1e-3, logging_steps: int = 1,
                  args_cls=transformers.TrainingArguments, **extra):
    """TrainingArguments (or a subclass: TRL's SFTConfig) for a CPU run that logs every step and
    saves nothing (unless `extra` says otherwise)."""
    options = dict(
        output_dir=str(output_dir), per_device_train_batch_size=batch,
        gradient_accumulation_steps=ga, max_steps=steps, learning_rate=lr, seed=seed,
        logging_steps=logging_steps, report_to="none", save_strategy="no", use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False,
        lr_scheduler_type="constant")
    options.update(extra)
    return args_cls(**options)


def losses_and_norms(trainer):
    """(loss, grad_norm) of every logged training step, in order."""
    return [(e["loss"], e.get("grad_norm")) for e in trainer.state.log_history if "loss" in e]
