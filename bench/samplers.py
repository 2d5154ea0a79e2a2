"""Tokens/s and NFE of every sampler and cache mode against vanilla low-confidence decoding.

    python bench/samplers.py [--repeats 3] [--batches 1 16] [--gen 256] [--block 32] [--prompt 64]
                             [--hidden 256] [--layers 4] [--accuracy-items 256] [--out FILE.json]

Speed: a random LLaDA-layout model (stock ``LlamaForCausalLM(is_causal=False)``, hidden 256,
4 layers, float32, CPU unless ``--device``), random prompts of 64 tokens, completion 256 in
blocks of 32, batch 1 and 16. Each repeat runs every configuration once, in a fresh shuffled
order (interleaved, so load from other processes spreads over all of them); the table gives
the median seconds per decode, tokens/s (``batch x gen / seconds``), NFE and the ratio of
tokens/s to vanilla low-confidence (one token per step, ``steps = gen``) of the same repeat,
as the median over repeats. A random model is not confident, so threshold samplers commit
about one token per step on it: their NFE here says nothing about a trained model's; the
cache's saving per forward is what this part measures.

Accuracy: ``builtin:sudoku-tiny`` on the Sudoku test puzzles (greedy, the built-in recipe's
gen 16 with fixed givens), every configuration at block 16 (the recipe's single block) and
block 4 (four blocks, where a block cache has something to reuse), against low-confidence with
one token per step.

The configurations are :data:`CONFIGS`; ``bench/gpu_samplers.py`` runs the same ones on an
8B-shaped model.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dmpo_core.samplers import EntropyBoundedSampler, FastDllmSampler, LowConfidenceSampler, RoarSampler

BASELINE = "low-confidence"
"""Vanilla LLaDA decoding: one token per step (``steps = gen``), no cache."""


def configs(gen: int, block: int) -> dict[str, Any]:
    """Every sampler and cache mode benchmarked, by a short name."""
    half = gen // 2
    out: dict[str, Any] = {
        BASELINE: LowConfidenceSampler(gen_length=gen, block_length=block, steps=gen),
        "low-confidence steps=L/2": LowConfidenceSampler(gen_length=gen, block_length=block, steps=half),
        "random-remask": LowConfidenceSampler(gen_length=gen, block_length=block, steps=gen, remasking="random"),
        "roar": RoarSampler(gen_length=gen, block_length=block, temperature=0.0),
    }
    for cache in ("prefix", "dual"):
        out[f"low-confidence cache={cache}"] = LowConfidenceSampler(gen_length=gen, block_length=block, steps=gen,
                                                                    cache=cache)
        out[f"low-confidence steps=L/2 cache={cache}"] = LowConfidenceSampler(gen_length=gen, block_length=block,
                                                                              steps=half, cache=cache)
    for cache in ("none", "prefix", "dual"):
        out[f"fast-dllm 0.9 cache={cache}"] = FastDllmSampler(gen_length=gen, block_length=block, threshold=0.9,
                                                              cache=cache)
        out[f"eb 0.1 cache={cache}"] = EntropyBoundedSampler(gen_length=gen, block_length=block, gamma=0.1,
                                                             cache=cache)
    return out


CONFIGS = configs
"""Alias used by ``bench/gpu_samplers.py``."""


def random_prompts(batch: int, prompt: int, vocab: int, mask_id: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random prompt ids ``[B, P]`` (never the mask id) with an all-ones mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab - 1, (batch, prompt), generator=g)  # [B, P]
    ids = torch.where(ids >= mask_id, ids + 1, ids)  # [B, P]
    return ids, torch.ones(batch, prompt, dtype=torch.long)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(sampler: Any, logits_fn: Callable[..., torch.Tensor], ids: torch.Tensor, mask: torch.Tensor,
              mask_id: int) -> tuple[float, int]:
    """Seconds and NFE of one decode."""
    _sync(ids.device)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = sampler(logits_fn, ids, mask, mask_id=mask_id, generator=torch.Generator().manual_seed(0))
    _sync(ids.device)
    return time.perf_counter() - t0, int(out.nfe)


def speed_table(logits_fn: Callable[..., torch.Tensor], *, vocab: int, mask_id: int, device: torch.device,
                batches: list[int], gen: int, block: int, prompt: int, repeats: int, only: list[str] | None = None,
                log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per (batch, configuration): median seconds, tokens/s, NFE, ratio to the baseline."""
    table = configs(gen, block)
    names = [n for n in table if not only or n in only or n == BASELINE]
    rows = []
    for batch in batches:
        ids, mask = random_prompts(batch, prompt, vocab, mask_id, seed=batch)
        ids, mask = ids.to(device), mask.to(device)
        time_once(table[BASELINE], logits_fn, ids, mask, mask_id)  # warm-up (allocator, kernels)
        seconds: dict[str, list[float]] = {n: [] for n in names}
        ratios: dict[str, list[float]] = {n: [] for n in names}
        nfe: dict[str, int] = {}
        for r in range(repeats):
            order = names[:]
            random.Random(1000 * batch + r).shuffle(order)
            this: dict[str, float] = {}
            for name in order:
                sec, nfe[name] = time_once(table[name], logits_fn, ids, mask, mask_id)
                this[name] = sec
                seconds[name].append(sec)
            for name in names:
                ratios[name].append(this[BASELINE] / this[name])  # tokens/s ratio = inverse time ratio
            log(f"batch {batch} repeat {r + 1}/{repeats}: baseline {this[BASELINE]:.2f} s")
        for name in names:
            med = statistics.median(seconds[name])
            rows.append({"batch": batch, "config": name, "seconds": med, "tokens_per_s": batch * gen / med,
                         "nfe": nfe[name], "ratio": statistics.median(ratios[name]),
                         "ratio_min": min(ratios[name]), "ratio_max": max(ratios[name])})
    return rows


def print_speed(rows: list[dict[str, Any]]) -> None:
    print(f"{'batch':>5}  {'configuration':<38} {'s/decode':>9} {'tokens/s':>9} {'NFE':>5}  {'x vanilla':>9}  range")
    for r in rows:
        print(f"{r['batch']:>5}  {r['config']:<38} {r['seconds']:>9.3f} {r['tokens_per_s']:>9.1f} {r['nfe']:>5}  "
              f"{r['ratio']:>8.2f}x  {r['ratio_min']:.2f}-{r['ratio_max']:.2f}")


def accuracy_table(items: int, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Held-out accuracy and mean NFE of every configuration on ``builtin:sudoku-tiny``."""
    from dmpo.backends import builtin
    from dmpo_core.registry import get_registry
    from dmpo_core.training.build import load_policy
    from dmpo_core.training.evaluate import evaluate

    recipe = builtin.recommended_config("builtin:sudoku-tiny")
    task = get_registry().create("task", "sudoku", "task_options", **recipe.get("task_options", {}))
    test = list(task.test_items())
    test = test if items >= len(test) else random.Random(0).sample(test, items)
    policy = load_policy("llada", "builtin:sudoku-tiny", {}, path="backend")
    gen = int(recipe["rollout"]["gen_length"])
    rows = []
    for block in (gen, 4):
        for name, sampler in configs(gen, block).items():
            if isinstance(sampler, LowConfidenceSampler) and sampler.remasking == "random" or isinstance(
                    sampler, RoarSampler):
                continue  # random orders: not an evaluation sampler
            metrics, _ = evaluate(policy, task, sampler, test, batch_size=256, gen_length=gen,
                                  generator=torch.Generator().manual_seed(0))
            rows.append({"block": block, "config": name, "accuracy": metrics["accuracy"],
                         "mean_nfe": metrics["mean_nfe"], "seconds": metrics["seconds"]})
            log(f"block {block} {name}: accuracy {metrics['accuracy']:.4f} nfe {metrics['mean_nfe']:.2f}")
    return rows


def print_accuracy(rows: list[dict[str, Any]]) -> None:
    print(f"{'block':>5}  {'configuration':<38} {'accuracy':>8} {'change':>7} {'mean NFE':>8}")
    for block in sorted({r["block"] for r in rows}, reverse=True):
        base = next(r for r in rows if r["block"] == block and r["config"] == BASELINE)["accuracy"]
        for r in (r for r in rows if r["block"] == block):
            print(f"{block:>5}  {r['config']:<38} {100 * r['accuracy']:>7.1f}% {100 * (r['accuracy'] - base):>+6.1f} "
                  f"{r['mean_nfe']:>8.2f}")


def random_llada(hidden: int, layers: int, heads: int, vocab: int, *, device: torch.device, dtype: torch.dtype,
                 seed: int = 0, mlp: int | None = None, reference: bool = False) -> Any:
    """A random LLaDA-layout policy (stock ``LlamaForCausalLM(is_causal=False)``) built in memory;
    ``reference``: with a frozen copy as its reference (what a training step needs)."""
    from dmpo.backends.hf_checkpoint import SpecialIds
    from dmpo.backends.hf_policy import HFBackendOptions, HFPolicy, LoadedFrom
    from dmpo.backends.llada import LLADA

    raw = {"model_type": "llada", "d_model": hidden, "n_layers": layers, "n_heads": heads, "n_kv_heads": heads,
           "mlp_hidden_size": mlp or 3 * hidden, "mlp_ratio": 4, "vocab_size": vocab, "embedding_size": vocab,
           "rope": True, "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "max_sequence_length": 4096}
    config = LLADA.to_config(raw, "bench")
    torch.manual_seed(seed)
    with torch.device(device):
        model = LLADA.model_class._from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.train(False)
    mask_id = vocab - 1
    ids = SpecialIds(mask=mask_id, eos=vocab - 2, pad=vocab - 2, eot=None, bos=None)
    ref = copy.deepcopy(model).requires_grad_(False).train(False) if reference else None
    return HFPolicy(model=model, tokenizer=None, family=LLADA, ids=ids, options=HFBackendOptions(),
                    source=LoadedFrom(model="random", folder=Path("."), format="converted", raw_config=raw),
                    reference_model=ref)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--gen", type=int, default=256)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--only", nargs="*", default=None, help="configuration names (the baseline always runs)")
    ap.add_argument("--accuracy-items", type=int, default=256, help="Sudoku test puzzles (0: skip accuracy)")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--out", default=None, help="JSON file for both tables")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    result: dict[str, Any] = {"args": vars(args), "torch_threads": torch.get_num_threads()}
    if not args.skip_speed:
        device = torch.device(args.device)
        policy = random_llada(args.hidden, args.layers, args.heads, args.vocab, device=device, dtype=torch.float32)
        rows = speed_table(policy.logits, vocab=args.vocab, mask_id=policy.mask_id, device=device,
                           batches=args.batches, gen=args.gen, block=args.block, prompt=args.prompt,
                           repeats=args.repeats, only=args.only, log=log)
        result["speed"] = rows
        print(f"speed: random LLaDA-layout model hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}, "
              f"prompt {args.prompt}, gen {args.gen}, block {args.block}, {args.device}, {args.repeats} repeats "
              f"interleaved, {torch.get_num_threads()} threads")
        print_speed(rows)
    if args.accuracy_items:
        acc = accuracy_table(args.accuracy_items, log=log)
        result["accuracy"] = acc
        print(f"accuracy: builtin:sudoku-tiny, {args.accuracy_items} Sudoku test puzzles, greedy")
        print_accuracy(acc)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
