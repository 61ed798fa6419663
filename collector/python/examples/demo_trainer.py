#!/usr/bin/env python3
"""lossguard's Python demo trainer: a small GPT-style causal LM trained on CPU on a generated
corpus, with the lossguard collector attached through the Python package. It reproduces the public
loss-normalisation bugs on demand, like the C++ demo trainer, with the same flags.

    demo_trainer.py --server http://127.0.0.1:8080 --run ok --micro-batch-size 8 --ga-steps 1
    demo_trainer.py --server ... --run ok-ga8 --micro-batch-size 1 --ga-steps 8   # same losses
    demo_trainer.py --server ... --run bug --micro-batch-size 1 --ga-steps 8 --loss sum-no-ga-div
    demo_trainer.py --server ... --run ddp --world-size 2                        # 2 gloo processes

Needs the lossguard package on the path (PYTHONPATH=build/python, or installed).
"""

import argparse
import math
import os
import sys
import tempfile
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_data  # noqa: E402  (the directory of this script)
import lossguard  # noqa: E402

LOSS_PATTERNS = ["correct", "sum-no-ga-div", "mean-of-means", "per-sequence"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)

    def positive_int(text):
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, but got {value}")
        return value

    def positive_float(text):
        value = float(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, but got {text}")
        return value

    p.add_argument("--server", default="", help="lossguard server URL (none: no streaming)")
    p.add_argument("--run", default="demo-py", help="run name")
    p.add_argument("--seed", type=int, default=0, help="data and weights seed")
    p.add_argument("--micro-batch-size", type=positive_int, default=8)
    p.add_argument("--ga-steps", type=positive_int, default=1, help="gradient-accumulation steps")
    p.add_argument("--steps", type=positive_int, default=150, help="optimizer steps")
    p.add_argument("--lr", type=positive_float, default=3e-3, help="AdamW learning rate")
    p.add_argument("--world-size", type=positive_int, default=1,
                   help="data-parallel processes (gloo over loopback)")
    p.add_argument("--loss", choices=LOSS_PATTERNS, default="correct",
                   help="how the trainer computes its loss")
    p.add_argument("--lr-spike-at", type=int, default=-1,
                   help="multiply the learning rate at this step")
    p.add_argument("--lr-spike-factor", type=float, default=1.0, help="by this factor")
    p.add_argument("--lr-spike-steps", type=positive_int, default=1, help="for this many steps")
    p.add_argument("--guard", default=None,
                   help="act on verdicts: KIND[:SEVERITY]=warn|lower_lr[:F]|skip_step|rollback|"
                        "stop,... (e.g. loss_scale_mismatch=stop,nonfinite=skip_step)")
    p.add_argument("--checkpoint-dir", default="",
                   help="with --guard: checkpoints for rollback, and the state saved at a stop")
    p.add_argument("--checkpoint-every", type=positive_int, default=25)
    p.add_argument("--keep-checkpoints", type=positive_int, default=4)
    p.add_argument("--loss-impl", choices=["fused", "unfused"], default="fused",
                   help="fused: lossguard.linear_cross_entropy from the hidden states; unfused: "
                        "the head's logits, then lossguard.causal_lm_loss")
    p.add_argument("--nan-at", type=int, default=-1, help="make the loss NaN at this step")
    p.add_argument("--detach-loss-at", type=int, default=-1,
                   help="from this step's backward no gradient reaches the model")
    p.add_argument("--bad-data-at", type=int, default=-1,
                   help="train on random tokens for three steps from here (a corrupt shard)")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear learning-rate warm-up")
    p.add_argument("--ga-change-at", type=int, default=-1, help="from this step on, use --ga-change-to")
    p.add_argument("--ga-change-to", type=positive_int, default=1)
    p.add_argument("--cosine", action="store_true",
                   help="cosine learning-rate decay to lr/10 after the warm-up")
    p.add_argument("--init-model", default="",
                   help="start from these weights (a --save-model file): fine-tuning")
    p.add_argument("--save-model", default="", help="at the end, save the weights here (rank 0)")
    p.add_argument("--skip-all-reduce-rank", type=int, default=-1,
                   help="a rank fault: this rank keeps its local gradients instead of the "
                        "all-reduced ones...")
    p.add_argument("--skip-all-reduce-from", type=int, default=0, help="...from this step on")
    p.add_argument("--clip", type=positive_float, default=1.0, help="gradient clipping max norm")
    p.add_argument("--spool-dir", default=None,
                   help="directory of per-run spools (default: $LOSSGUARD_SPOOL_DIR, else "
                        "~/.local/state/lossguard/spool; none: no spool)")
    p.add_argument("--flush-timeout-s", type=float, default=30.0,
                   help="at the end, wait this long for delivery")
    p.add_argument("--no-collector", action="store_true",
                   help="train without the collector (overhead baseline)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    if args.warmup_steps < 0:
        p.error("--warmup-steps must be >= 0")
    if args.init_model and not os.path.isfile(args.init_model):
        p.error(f"--init-model {args.init_model}: no such file")
    if args.world_size > 16:
        p.error("--world-size must be <= 16")
    return args


def micro_loss(args, ga_steps, window, i, model, ids, labels):
    """What a trainer with each --loss pattern backpropagates, and its contribution to the loss it
    reports (a detached tensor: read once a step, not once a micro-batch), for micro-batch i.
    --loss-impl fused computes it from the hidden states (lossguard.linear_cross_entropy: the
    logits never exist), unfused from the head's logits."""
    hidden = model.hidden(ids)
    head = model.head
    fused = args.loss_impl == "fused"
    logits = None if fused else head(hidden)
    if args.loss == "correct":
        loss = (window.linear_loss(i, hidden, head.weight, head.bias) if fused
                else window.loss(i, logits))  # sum x world_size / global tokens
        return loss, loss.detach() / window.world_size
    # The reference, computed alongside (no gradient).
    if fused:
        window.linear_loss(i, hidden.detach(), head.weight.detach(), head.bias.detach())
    else:
        window.loss(i, logits.detach())

    def token_loss(reduction):
        if fused:
            return lossguard.linear_cross_entropy(hidden, head.weight, labels, bias=head.bias,
                                                  reduction=reduction)
        return lossguard.causal_lm_loss(logits, labels, reduction=reduction)

    mean = token_loss("mean")
    if args.loss == "sum-no-ga-div":  # Axolotl: GA x too large
        return mean, mean.detach()
    if args.loss == "mean-of-means":  # transformers before its fix
        return mean / ga_steps, mean.detach() / ga_steps
    # per-sequence: the token-loss sum divided by the number of sequences instead of tokens
    per_sequence = token_loss("sum") / labels.size(0) / ga_steps
    return per_sequence, per_sequence.detach()


def train(args, rank: int = 0) -> dict:
    """Trains on this process (rank `rank` of args.world_size, torch.distributed already set up
    when more than one). Returns {"ms_per_step", "stats", "delivered"}."""
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    text = demo_data.corpus()
    model = demo_data.Gpt()
    if args.init_model:  # fine-tuning a trained model
        model.load_state_dict(torch.load(args.init_model))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    collector = None
    if not args.no_collector:
        spool_dir = "" if args.spool_dir == "none" else args.spool_dir
        collector = lossguard.Collector(args.server, args.run, rank=rank,
                                        world_size=args.world_size,
                                        micro_batch_size=args.micro_batch_size,
                                        vocab_size=demo_data.VOCAB, spool_dir=spool_dir,
                                        drain_timeout=args.flush_timeout_s, guard=args.guard)
    checkpoints = Checkpoints(args.checkpoint_dir, args.keep_checkpoints, collector)
    if collector is not None and collector.guarded:
        checkpoints.save(-1, model, optimizer)
    skipped = rolled_back = 0
    started = time.perf_counter()
    for step in range(args.steps):
        ga_steps = args.ga_change_to if 0 <= args.ga_change_at <= step else args.ga_steps
        per_rank = args.micro_batch_size * ga_steps
        warmup = (step + 1) / args.warmup_steps if step < args.warmup_steps else 1.0
        decay = 1.0
        if args.cosine and step >= args.warmup_steps:
            progress = (step - args.warmup_steps) / max(1, args.steps - args.warmup_steps)
            decay = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
        spiking = 0 <= args.lr_spike_at <= step < args.lr_spike_at + args.lr_spike_steps
        lr = args.lr * warmup * decay * (args.lr_spike_factor if spiking else 1.0)
        if collector is not None:
            lr *= collector.lr_scale
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        micro = []
        for i in range(ga_steps):
            ids, labels = demo_data.sequences(text, args.seed, step,
                                              rank * per_rank + i * args.micro_batch_size,
                                              args.micro_batch_size)
            if args.bad_data_at >= 0 and args.bad_data_at <= step < args.bad_data_at + 3:
                noise = torch.randint(1, demo_data.VOCAB, ids.shape)  # a corrupt shard
                has_text = labels != -100
                ids, labels = torch.where(has_text, noise, ids), torch.where(has_text, noise, labels)
            micro.append((ids, labels))
        window = lossguard.AccumulationWindow([labels for _, labels in micro])
        reported_sum = torch.zeros(())
        for i, (ids, labels) in enumerate(micro):
            backward, contribution = micro_loss(args, ga_steps, window, i, model, ids, labels)
            if step == args.nan_at:
                backward = backward * math.nan
            if 0 <= args.detach_loss_at <= step:  # a kernel returning zero gradients
                backward = backward.detach().requires_grad_(True)
            backward.backward()
            reported_sum += contribution
        if args.world_size > 1:  # what DDP does: average gradients over ranks
            skips = rank == args.skip_all_reduce_rank and step >= args.skip_all_reduce_from
            for p in model.parameters():
                if p.grad is None:
                    continue
                if skips:  # joins the collective (nothing hangs) but keeps its own gradients
                    dist.all_reduce(p.grad.clone())
                    continue
                dist.all_reduce(p.grad)
                p.grad /= args.world_size
        # A correct trainer reports the step's token-normalised loss over all ranks: the window's
        # totals (a collective and one read, shared with the record). Others read their own sum.
        if step == args.nan_at:
            reported = math.nan
        elif args.loss == "correct":
            reported = window.reference_loss()
        else:
            reported = reported_sum.item()
        if collector is None:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip).item()
            optimizer.step()
        else:
            grads = lossguard.grad_stats(model.parameters())
            decision = None
            if collector.guarded:  # judged before optimizer.step()
                decision = collector.guard_step(step, reported, ref_loss=window.reference_loss(),
                                                grad_norm=grads["grad_norm"],
                                                nonfinite_grads=grads["nonfinite_grads"])
                if decision.lr_factor != 1.0:
                    lr *= decision.lr_factor
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                if decision.stop:
                    collector.record_step(step, reported, window=window, lr=lr, **grads)
                    return stop_for_guard(args, step, model, optimizer, collector)
                if decision.rollback:
                    checkpoints.restore(decision.rollback_to, model, optimizer)
                    rolled_back += 1
                elif not decision.step_optimizer:
                    skipped += 1
            if decision is None or decision.step_optimizer:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
                optimizer.step()
            collector.record_step(step, reported, window=window, lr=lr, **grads)
            if collector.guarded and (step + 1) % args.checkpoint_every == 0:
                checkpoints.save(step, model, optimizer)
            norm = grads["grad_norm"]
        if not args.quiet and rank == 0 and (step % 10 == 0 or step + 1 == args.steps):
            elapsed = time.perf_counter() - started
            print(f"[{args.run}] step {step:4d}/{args.steps}  loss {reported:8.4f}  "
                  f"grad_norm {norm:8.4f}  {(step + 1) / elapsed:5.1f} steps/s", flush=True)
    seconds = time.perf_counter() - started
    if args.save_model and rank == 0:
        torch.save(model.state_dict(), args.save_model)
    result = {"ms_per_step": 1000 * seconds / args.steps, "stats": {}, "delivered": True}
    if rank == 0:  # also with --quiet: the overhead benchmark reads it
        print(f"[{args.run}] trained {args.steps} steps in {seconds:.2f} s: "
              f"{result['ms_per_step']:.3f} ms/step", flush=True)
        if collector is not None and collector.guarded:
            print(f"[{args.run}] guard: {skipped} steps skipped, {rolled_back} rollbacks, "
                  f"learning rate x{collector.lr_scale:g}", flush=True)
    if collector is not None:
        result["delivered"] = collector.close(timeout=args.flush_timeout_s) if args.server else True
        result["stats"] = collector.stats()
    return result


class Checkpoints:
    """The demo's checkpoints, what the guard rolls back to: model and optimizer state after a
    step (-1: the initial state) in DIR/step-N.pt, the last `keep` kept. Without a directory
    nothing is saved (a rollback then stops)."""

    def __init__(self, directory: str, keep: int, collector):
        self.directory, self.keep, self.collector, self.saved = directory, keep, collector, []
        if directory:
            os.makedirs(directory, exist_ok=True)

    def path(self, step: int) -> str:
        return os.path.join(self.directory, f"step-{step}.pt")

    def save(self, step: int, model, optimizer) -> None:
        if not self.directory:
            return
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()},
                   self.path(step))
        self.collector.guard_checkpointed(step)
        self.saved.append(step)
        while len(self.saved) > self.keep:
            os.remove(self.path(self.saved[0]))
            self.collector.guard_checkpoint_removed(self.saved.pop(0))

    def restore(self, step: int, model, optimizer) -> None:
        state = torch.load(self.path(step))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        while self.saved and self.saved[-1] > step:  # the abandoned trajectory's
            os.remove(self.path(self.saved.pop()))


def stop_for_guard(args, step: int, model, optimizer, collector) -> dict:
    """The guard said stop: the state is saved, the collector flushed, the run ends with
    lossguard.STOP_EXIT_CODE (main's return)."""
    saved = "no checkpoint saved (no --checkpoint-dir)"
    if args.checkpoint_dir:
        path = os.path.join(args.checkpoint_dir, f"stopped-at-step-{step}.pt")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
        saved = f"the state before this step's update is in {path}"
    delivered = collector.close(timeout=args.flush_timeout_s) if args.server else True
    print(f"[{args.run}] stopped by lossguard's guard at step {step} (see the line above); "
          f"{saved}; {'every record reached the server' if delivered else 'records wait in the spool'}",
          file=sys.stderr, flush=True)
    return {"ms_per_step": 0.0, "stats": collector.stats(), "delivered": delivered,
            "stopped": True}


def _rank_main(rank: int, args, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=args.world_size)
    try:
        train(args, rank)
    finally:
        dist.destroy_process_group()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.world_size == 1:
        try:
            result = train(args)
        except ValueError as error:
            if not str(error).startswith("guard policy entry"):
                raise
            print(f"demo_trainer.py: --guard: {error}", file=sys.stderr)  # before training
            return 2
        if result.get("stopped"):
            return lossguard.STOP_EXIT_CODE
        return 0 if result["delivered"] or args.spool_dir != "none" else 1
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory(prefix="lossguard-demo-") as tmp:
        mp.spawn(_rank_main, args=(args, os.path.join(tmp, "rendezvous")),
                 nprocs=args.world_size, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
