"""Drives the ``deepspeed`` engine by hand on every rank of a launch and writes what it saw.

Run under ``python -m torch.distributed.run --nproc-per-node N engine_check.py OUT.json
[--stage 3] [--lora] [--checkpointing] [--save DIR [--converted]]``. Each rank trains the
built-in model for three steps on its share of one fixed global batch (two micro-batches per
step, so gradient accumulation is exercised, and one dropped backward before the second step),
while a local engine in the same process trains a second copy on the WHOLE batch: the two must
agree, whatever the number of ranks. It also checks ``full_parameters`` (whole tensors,
forwards without collectives, a different number of forwards per rank), ``sync_reference``, a
non-finite gradient, ``all_gather``/``shard``, and with ``--save`` writes a consolidated policy
and the engine's sharded state, then checks that loading that state undoes a later step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch

from dmpo.backends.engines import LocalEngine
from dmpo_core.registry import get_registry
from dmpo_core.training.build import load_policy

ROWS, SEQ, STEPS = 8, 12, 3  # global batch [ROWS, SEQ]


def load(lora: bool, checkpointing: bool, backend: str, model: str):
    options = {"gradient_checkpointing": checkpointing}
    if lora:
        options.update(lora="all", lora_r=4, lora_alpha=8.0, lora_dropout=0.0)
    return load_policy(backend, model, options)


def batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (ROWS, SEQ), generator=g)  # [ROWS, SEQ]
    noisy = torch.where(torch.rand(ROWS, SEQ, generator=g) < 0.5, torch.full_like(ids, 2), ids)  # [ROWS, SEQ]
    return noisy, torch.ones_like(ids), ids


def loss_of(policy, rows: slice, total: int, data) -> torch.Tensor:
    """Sum of the rows' mean cross-entropy over ``total`` rows (slices add up to the full loss)."""
    noisy, mask, target = (t[rows] for t in data)
    logits = policy.current_logits(noisy, mask)  # [n, SEQ, V]
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")  # [n*SEQ]
    return ce.view(len(target), SEQ).mean(-1).sum() / total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--stage", type=int, default=3)
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--backend", default="llada")
    ap.add_argument("--model", default="builtin:sudoku-tiny")
    ap.add_argument("--save", default=None)
    ap.add_argument("--converted", action="store_true", help="also save the stock transformers layout")
    args = ap.parse_args()
    if os.environ.get("DMPO_CHECK_TRACE"):  # where a hang sits: every rank's stack after that many seconds
        import faulthandler

        faulthandler.dump_traceback_later(float(os.environ["DMPO_CHECK_TRACE"]), exit=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    hp = dict(lr=1e-3, beta1=0.9, beta2=0.99, weight_decay=0.1, grad_clip=0.5, warmup_steps=2, schedule="linear",
              total_steps=10)
    policy = load(args.lora, args.checkpointing, args.backend, args.model)
    local_policy = load(args.lora, args.checkpointing, args.backend, args.model)
    with torch.no_grad():  # the same fresh adapter in both copies
        for a, b in zip(policy.trainable_parameters(), local_policy.trainable_parameters(), strict=True):
            b.copy_(a)
    factory = get_registry().get("engine", "deepspeed").factory
    engine = factory(policy, **hp, zero_stage=args.stage, persistence_threshold=0 if args.stage == 3 else None)
    local = LocalEngine(local_policy, **hp)
    rank, world = engine.rank, engine.world_size
    report: dict = {"rank": rank, "world": world, "checks": {}}
    checks = report["checks"]

    with engine.full_parameters(policy):
        vocab = policy.vocab_size
    data = batch(vocab)
    mine = engine.shard(ROWS)  # this rank's rows
    checks["shard_contiguous"] = engine.all_gather(torch.tensor([mine.start, mine.stop])).tolist()
    if not args.lora and args.stage == 3:  # the weights really are partitioned outside the context
        emb = policy.model.get_input_embeddings().weight
        checks["partitioned_numel_outside"] = int(emb.numel())
    lrs, norms, local_norms = [], [], []
    policy.train(True)
    local_policy.train(True)
    for step in range(STEPS):
        lrs.append((engine.lr, local.lr))
        if step == 1:  # a backward whose gradients are dropped: zero_grad must leave nothing behind
            engine.backward(loss_of(policy, slice(mine.start, mine.stop), len(mine), data) * 100.0)
            engine.zero_grad()
            local.backward(loss_of(local_policy, slice(0, ROWS), ROWS, data) * 100.0)
            local.zero_grad()
        half = (mine.stop - mine.start) // 2
        for part in (slice(mine.start, mine.start + half), slice(mine.start + half, mine.stop)):
            engine.backward(loss_of(policy, part, len(mine), data))
        norms.append(engine.step())
        for part in (slice(0, ROWS // 2), slice(ROWS // 2, ROWS)):
            local.backward(loss_of(local_policy, part, ROWS, data))
        local_norms.append(local.step())
    policy.train(False)
    checks["norms"] = [norms, local_norms]
    checks["lrs"] = lrs

    # whole weights inside full_parameters, equal to the local run's
    with engine.full_parameters(policy):
        diffs = [float((a.detach().cpu() - b.detach().cpu()).abs().max())
                 for a, b in zip(policy.trainable_parameters(), local_policy.trainable_parameters(), strict=True)]
        whole = all(tuple(a.shape) == tuple(b.shape)
                    for a, b in zip(policy.model.parameters(), local_policy.model.parameters(), strict=True))
        # a data-dependent number of forwards per rank: none may wait for another
        forwards = 1 + 2 * rank
        with torch.no_grad():
            with engine.full_parameters(policy):  # nested: gathers nothing more
                for _ in range(forwards):
                    logits = policy.current_logits(data[0][:2], data[1][:2])
            for _ in range(forwards):  # still whole, and hook-free, after the nested one's exit
                ref_logits = policy.reference_logits(data[0][:2], data[1][:2])
        local_logits = local_policy.current_logits(data[0][:2], data[1][:2]).detach()
        local_ref = local_policy.reference_logits(data[0][:2], data[1][:2])
    checks["unsynced_reference_gap"] = float((logits - ref_logits).abs().max())  # > 0: the reference is not the policy
    checks["max_weight_diff"] = max(diffs)
    checks["whole_inside"] = whole
    checks["forwards"] = engine.gather_objects(forwards)
    checks["logits_diff"] = float((logits - local_logits).abs().max())
    checks["reference_logits_diff"] = float((ref_logits - local_ref).abs().max())

    # reference sync: afterwards the reference gives the current logits
    engine.sync_reference(policy)
    local.sync_reference(local_policy)
    with torch.no_grad():  # outside full_parameters: ZeRO-3 fetches weights by collectives
        cur = policy.current_logits(data[0][:2], data[1][:2])
        ref = policy.reference_logits(data[0][:2], data[1][:2])
    checks["synced_reference_diff"] = float((cur - ref).abs().max())

    # a non-finite gradient: the update is skipped, the norm says so
    with engine.full_parameters(policy):
        before = [p.detach().cpu().clone() for p in policy.trainable_parameters()]
    policy.train(True)
    engine.backward(loss_of(policy, slice(mine.start, mine.stop), len(mine), data) * float("inf"))
    bad = engine.step()
    policy.train(False)
    with engine.full_parameters(policy):
        after = [p.detach().cpu().clone() for p in policy.trainable_parameters()]
    checks["nonfinite_norm"] = bad if not math.isfinite(bad) else f"finite {bad}"
    checks["nonfinite_unchanged"] = all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    checks["stats"] = dict(engine.stats)

    if args.save:
        folder = Path(args.save)
        if engine.is_main:
            folder.mkdir(parents=True, exist_ok=True)
        engine.barrier()
        engine.save_state(folder)
        engine.barrier()
        with engine.full_parameters(policy):
            if engine.is_main:
                policy.save(str(folder / "policy"))
                if args.converted:
                    policy.save(str(folder / "policy-hf"), format="converted")
                if args.lora:
                    policy.save(str(folder / "adapter"), format="adapter")
                with torch.no_grad():
                    torch.save(policy.current_logits(data[0][:2], data[1][:2]), folder / "logits.pt")
        engine.barrier()

        # resume: a step after the save, then load the save and take the same step again
        def one_step() -> list[torch.Tensor]:
            policy.train(True)
            engine.backward(loss_of(policy, slice(mine.start, mine.stop), len(mine), data))
            engine.step()
            policy.train(False)
            with engine.full_parameters(policy):
                return [p.detach().cpu().clone() for p in policy.trainable_parameters()]

        lr_saved = engine.lr
        first = one_step()
        with engine.full_parameters(policy, writable=True):  # scribble over the weights: the load must undo it
            with torch.no_grad():
                for p in policy.trainable_parameters():
                    p.add_(1.0)
        engine.load_state(folder)
        checks["resumed_lr"] = [lr_saved, engine.lr]
        again = one_step()
        checks["resumed_step_diff"] = max(float((a - b).abs().max()) for a, b in zip(first, again, strict=True))
    Path(f"{args.out}.{rank}").write_text(json.dumps(report))


if __name__ == "__main__":
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    sys.exit(main())
