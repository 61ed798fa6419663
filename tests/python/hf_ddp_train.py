"""One rank of a data-parallel Hugging Face Trainer run on CPU (gloo), started by torchrun from
test_hf_trainer.py: the tiny Llama of hf_tiny with LossguardCallback attached.

    python -m torch.distributed.run --nproc_per_node 2 hf_ddp_train.py SERVER RUN OUTPUT_DIR SPOOL
"""

import sys

from transformers import Trainer

import hf_tiny
from lossguard.integrations.hf import LossguardCallback


def main(server: str, run: str, output_dir: str, spool_dir: str) -> None:
    tokenizer = hf_tiny.make_tokenizer()
    examples = hf_tiny.lm_examples(hf_tiny.sequences(tokenizer, 2 * 4 * 2 * 8, 8, 48, seed=8))
    cb = LossguardCallback(server, run, spool_dir=spool_dir)
    args = hf_tiny.training_args(output_dir, batch=4, ga=2, steps=8, ddp_backend="gloo")
    trainer = Trainer(model=hf_tiny.llama(seed=0), args=args, train_dataset=examples,
                      data_collator=hf_tiny.PadCollator(tokenizer.pad_token_id), callbacks=[cb])
    trainer.train()


if __name__ == "__main__":
    main(*sys.argv[1:5])
