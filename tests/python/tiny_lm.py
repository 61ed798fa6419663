"""A tiny deterministic causal LM and variable-length sequences, shared by the accumulation tests
and their gloo worker processes."""

import torch


def sequences(n=8, t=12, vocab=23, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, t), generator=g)
    labels = ids.clone()
    lengths = torch.randint(3, t + 1, (n,), generator=g)  # very different token counts
    for i, length in enumerate(lengths.tolist()):
        labels[i, length:] = -100
    return ids, labels


def model(vocab=23, dim=16, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Embedding(vocab, dim), torch.nn.Linear(dim, vocab))


def train_step(net, ids, labels, micro_batch_size, group=False, average_gradients=False):
    """One optimizer step's gradient accumulation over this process's sequences, split into
    micro-batches of `micro_batch_size`; returns (reference loss, gradients as one flat tensor)."""
    import lossguard

    net.zero_grad()
    chunks = list(zip(ids.split(micro_batch_size), labels.split(micro_batch_size)))
    window = lossguard.AccumulationWindow([y for _, y in chunks], group=group)
    for i, (x, _) in enumerate(chunks):
        window.loss(i, net(x)).backward()
    if average_gradients:  # what DDP does
        import torch.distributed as dist
        for p in net.parameters():
            dist.all_reduce(p.grad)
            p.grad /= dist.get_world_size()
    grads = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    return window.reference_loss(), grads, window


def gloo_worker(rank, world_size, init_file, out_file):
    """Rank `rank` of a gloo group: trains its half of the sequences (two micro-batches of 2) and
    writes its reference loss, gradients and token counts to out_file.rank."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        import lossguard

        ids, labels = sequences()
        per_rank = ids.size(0) // world_size
        mine = slice(rank * per_rank, (rank + 1) * per_rank)
        ref, grads, window = train_step(model(), ids[mine], labels[mine], 2, group=None,
                                        average_gradients=True)
        counted = lossguard.count_label_tokens(list(labels[mine].split(2)))
        torch.save({"ref": ref, "grads": grads, "num_items": window.num_items,
                    "local": window.local_tokens, "world": window.world_size,
                    "counted": counted}, f"{out_file}.{rank}")
    finally:
        dist.destroy_process_group()
