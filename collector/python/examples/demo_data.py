"""The Python demo's model and data: the C++ demo trainer's small GPT-style causal LM and its
generated pseudo-English corpus (the same design; not bit-identical to the C++ demo's numbers).

Sequence j of step s depends only on (seed, s, j), so any split of an optimizer step's sequences
into micro-batches, accumulation steps and ranks sees the same sequences; there is no dropout, so
runs that split the same batch differently compute the same losses."""

import random

import torch
from torch import nn

CONTEXT, DIM, HEADS, LAYERS = 64, 64, 4, 2
VOCAB, PAD = 96, 0  # characters 32..126 are ids 1..95; 0 is padding


def token_id(character: str) -> int:
    code = ord(character)
    return code - 31 if 32 <= code <= 126 else 1


def corpus(characters: int = 200_000) -> str:
    """``characters`` characters of sentences from a fixed grammar (the same text every time)."""
    subjects = ["the model", "a trainer", "the optimizer", "every gradient", "the loss",
                "a small batch", "the engineer", "this run", "the server", "a token"]
    verbs = ["sees", "counts", "divides", "accumulates", "watches", "reports", "normalises",
             "scales", "clips", "streams"]
    objects = ["the tokens", "every step", "the ranks", "a warning", "its norm", "the labels",
               "the sum", "each micro-batch", "the mean", "a spike"]
    rng = random.Random(1234)
    parts, size = [], 0
    while size < characters:
        sentence = (f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}"
                    + (", and " if rng.randrange(4) == 0 else ". "))
        parts.append(sentence)
        size += len(sentence)
    return "".join(parts)


def sequences(text: str, seed: int, step: int, first: int, n: int):
    """Sequences first..first+n-1 of `step`: (ids, labels), each [n, CONTEXT]; padding has id 0 and
    label -100. Lengths vary from 16 to 64 tokens."""
    ids = torch.full((n, CONTEXT), PAD, dtype=torch.long)
    labels = torch.full((n, CONTEXT), -100, dtype=torch.long)
    for i in range(n):
        rng = random.Random(seed * 1_000_003 + step * 65_537 + first + i)
        length = 16 + rng.randrange(CONTEXT - 15)
        start = rng.randrange(len(text) - CONTEXT)
        tokens = torch.tensor([token_id(c) for c in text[start:start + length]], dtype=torch.long)
        ids[i, :length] = tokens
        labels[i, :length] = tokens
    return ids, labels


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(DIM)
        self.attention = nn.MultiheadAttention(DIM, HEADS, dropout=0.0, batch_first=True)
        self.ln2 = nn.LayerNorm(DIM)
        self.fc = nn.Linear(DIM, 4 * DIM)
        self.proj = nn.Linear(4 * DIM, DIM)

    def forward(self, x: torch.Tensor, causal_mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attention(h, h, h, attn_mask=causal_mask, need_weights=False)[0]
        return x + self.proj(nn.functional.gelu(self.fc(self.ln2(x))))


class Gpt(nn.Module):
    def __init__(self):
        super().__init__()
        self.token = nn.Embedding(VOCAB, DIM)
        self.position = nn.Embedding(CONTEXT, DIM)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, VOCAB)

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """The final hidden states [B, T, DIM], before the head: what a fused loss takes."""
        t = ids.size(1)
        x = self.token(ids) + self.position(torch.arange(t)).unsqueeze(0)
        mask = torch.full((t, t), float("-inf")).triu(1)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln(x)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(ids))
