"""bf16 autocast (float32 master weights) against float32: numerics and speed of each stage.

    python bench/precision.py [--repeats 5] [--models builtin moderate] [--out FILE.json]

Two models: ``builtin:sudoku-tiny`` at its recipe's rollout settings (8 prompts x G 8, gen 16,
4 steps, fixed givens, ELBO and WDCE with R 2), and a moderate random LLaDA-layout model
(stock ``LlamaForCausalLM(is_causal=False)``, hidden 256, 4 layers, vocab 4096) on random
prompts of 64 tokens, 2 prompts x G 4, gen 256 in blocks of 32, 64 steps.

Numerics (bf16 autocast vs float32, same inputs, same seeded masks): max and mean absolute
logit difference on a half-masked batch of the model's own completions, with the fraction of
masked positions whose argmax agrees; max and mean absolute difference of the ELBO estimates of
``log p(x)`` (with their mean magnitude for scale); the WDCE loss difference and the cosine of
the two gradients; the fraction of tokens equal in a greedy decode.

Speed: each repeat times every stage in float32 and in bf16 once, in a fresh shuffled order
(interleaved, so load from other processes spreads over both); a stage is the rollout (one
sampler call), the log-probs (``estimate_log_likelihoods``: current and reference ELBO) or the
loss (the WDCE forward and backward). The table gives the median seconds and the median over
repeats of the per-repeat ratio float32 / bf16 (above 1: autocast is faster).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

from dmpo_core.data import RolloutBatch
from dmpo_core.objective.schemes import DmpoWeighting
from dmpo_core.objective.wdce import WdceObjective
from dmpo_core.samplers import LowConfidenceSampler
from dmpo_core.training.precision import stage_precision
from dmpo_core.training.rollout import estimate_log_likelihoods

sys.path.insert(0, str(Path(__file__).resolve().parent))
from samplers import _sync, random_llada, random_prompts  # noqa: E402

PRECISIONS = ("float32", "bfloat16")
STAGES = ("rollout", "logp", "loss")


@attrs.frozen(kw_only=True)
class Setting:
    """A model and the inputs of one training step on it."""

    name: str
    policy: Any
    prompt_ids: torch.Tensor  # [N, P]
    prompt_mask: torch.Tensor  # [N, P]
    prefill: torch.Tensor | None  # [N, L] or None
    group_size: int
    sampler: LowConfidenceSampler
    greedy: LowConfidenceSampler
    replicates: int


def builtin_setting(device: torch.device) -> Setting:
    """``builtin:sudoku-tiny`` with its recipe's rollout settings and the task's prompts."""
    from dmpo.backends import builtin
    from dmpo_core.registry import get_registry
    from dmpo_core.training.build import load_policy
    from dmpo_core.training.rollout import encode_prompts, task_prefill

    recipe = builtin.recommended_config("builtin:sudoku-tiny")
    ro = recipe["rollout"]
    task = get_registry().create("task", "sudoku", "task_options", **recipe.get("task_options", {}))
    policy = load_policy("llada", "builtin:sudoku-tiny", {"device": str(device)}, path="backend")
    items = [it for it in list(task.train_items())[: ro["prompts_per_step"]] for _ in range(ro["group_size"])]
    ids, mask = encode_prompts(policy.tokenizer, [task.prompt(it, policy.tokenizer) for it in items], policy.pad_id)
    prefill = task_prefill(task, items, policy.tokenizer, ro["gen_length"], policy.mask_id).to(device)  # [N, L]
    ids, mask = ids.to(device), mask.to(device)
    opts = dict(gen_length=ro["gen_length"], block_length=ro["block_length"], steps=ro["steps"])
    return Setting(name="builtin:sudoku-tiny", policy=policy, prompt_ids=ids, prompt_mask=mask, prefill=prefill,
                   group_size=ro["group_size"], sampler=LowConfidenceSampler(temperature=ro["temperature"], **opts),
                   greedy=LowConfidenceSampler(temperature=0.0, **opts),
                   replicates=int(recipe["scoring"]["replicates"]))


def moderate_setting(hidden: int, layers: int, vocab: int, prompt: int, gen: int, device: torch.device) -> Setting:
    """A random LLaDA-layout model (with a reference copy) on random prompts."""
    policy = random_llada(hidden, layers, 4, vocab, device=device, dtype=torch.float32, reference=True)
    group = 4
    ids, mask = random_prompts(2, prompt, vocab, policy.mask_id, seed=0)
    ids, mask = ids.repeat_interleave(group, 0).to(device), mask.repeat_interleave(group, 0).to(device)  # [B*G, P]
    opts = dict(gen_length=gen, block_length=32, steps=gen // 4)
    return Setting(name=f"random hidden {hidden} x {layers} layers", policy=policy, prompt_ids=ids,
                   prompt_mask=mask, prefill=None, group_size=group,
                   sampler=LowConfidenceSampler(temperature=1.0, **opts),
                   greedy=LowConfidenceSampler(temperature=0.0, **opts), replicates=2)


def rollout(s: Setting, sampler: LowConfidenceSampler, seed: int = 0) -> torch.Tensor:
    """Completions ``[N, L]`` of one sampler call."""
    with torch.no_grad():
        out = sampler(s.policy.logits, s.prompt_ids, s.prompt_mask, mask_id=s.policy.mask_id,
                      generator=torch.Generator().manual_seed(seed), prefill=s.prefill)
    return out.completion_ids


def make_batch(s: Setting, completions: torch.Tensor) -> RolloutBatch:
    """A rollout batch of ``completions`` with seeded random rewards (the loss needs some)."""
    n = completions.shape[0]
    eligible = s.prefill == s.policy.mask_id if s.prefill is not None else torch.ones_like(completions, dtype=torch.bool)
    rewards = torch.rand(n, generator=torch.Generator().manual_seed(1))  # [N]
    return RolloutBatch(prompt_ids=s.prompt_ids.cpu(), prompt_mask=s.prompt_mask.bool().cpu(),
                        completion_ids=completions.cpu(), eligible=eligible.cpu(), rewards=rewards,
                        group_size=s.group_size)


def logp(s: Setting, batch: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """ELBO estimates ``[N]``, ``[N]`` of the current and reference policy, seeded masks."""
    return estimate_log_likelihoods(s.policy, batch, replicates=s.replicates, antithetic=True,
                                    generator=torch.Generator().manual_seed(2))


def loss_and_grad(s: Setting, batch: RolloutBatch, precision: str) -> tuple[float, torch.Tensor]:
    """WDCE loss (forward under ``precision``, backward outside) and the flat gradient."""
    weights = DmpoWeighting(alpha=0.04)(batch.rewards, torch.zeros_like(batch.rewards), batch.group_size)
    objective = WdceObjective(replicates=s.replicates)
    params = [p for p in s.policy.trainable_parameters() if p.requires_grad]
    s.policy.train(True)
    with stage_precision(precision, s.policy.device):
        loss, _ = objective(s.policy, batch, weights, num_groups=batch.num_groups,
                            generator=torch.Generator().manual_seed(3))
    loss.backward()
    s.policy.train(False)
    grad = torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None]).cpu()  # [#params]
    for p in params:
        p.grad = None
    return float(loss.detach()), grad


def numerics(s: Setting) -> dict[str, float]:
    """bf16 autocast vs float32 on the same inputs (see the module docstring)."""
    policy = s.policy
    comp = rollout(s, s.sampler)  # [N, L]
    batch = make_batch(s, comp)
    g = torch.Generator().manual_seed(4)
    comp = comp.cpu()
    masked = (torch.rand(comp.shape, generator=g) < 0.5) & batch.eligible  # [N, L]
    noisy = torch.where(masked, torch.full_like(comp, policy.mask_id), comp)  # [N, L]
    ids = torch.cat([s.prompt_ids.cpu(), noisy], dim=1)  # [N, P+L]
    attn = torch.cat([s.prompt_mask.cpu(), torch.ones_like(noisy)], dim=1)  # [N, P+L]
    with torch.no_grad():
        full = policy.logits(ids, attn, last=comp.shape[1]).float().cpu()  # [N, L, V]
        with stage_precision("bfloat16", policy.device):
            half = policy.logits(ids, attn, last=comp.shape[1]).float().cpu()  # [N, L, V]
    diff = (half - full).abs()[masked]  # [M, V]
    agree = (half.argmax(-1) == full.argmax(-1))[masked].float().mean()
    elbo32, _ = logp(s, batch)
    with stage_precision("bfloat16", policy.device):
        elbo16, _ = logp(s, batch)
    loss32, grad32 = loss_and_grad(s, batch, "float32")
    loss16, grad16 = loss_and_grad(s, batch, "bfloat16")
    greedy32 = rollout(s, s.greedy)
    with stage_precision("bfloat16", policy.device):
        greedy16 = rollout(s, s.greedy)
    return {
        "logit_max_abs_diff": float(diff.max()), "logit_mean_abs_diff": float(diff.mean()),
        "logit_std": float(full[masked].std()), "argmax_agreement": float(agree),
        "elbo_max_abs_diff": float((elbo16 - elbo32).abs().max()),
        "elbo_mean_abs_diff": float((elbo16 - elbo32).abs().mean()), "elbo_mean_abs": float(elbo32.abs().mean()),
        "loss_abs_diff": abs(loss16 - loss32), "loss": loss32,
        "grad_cosine": float(torch.nn.functional.cosine_similarity(grad16.double(), grad32.double(), dim=0)),
        "greedy_token_agreement": float((greedy16 == greedy32).float().mean().cpu()),
    }


def speed(s: Setting, repeats: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Median seconds per stage and precision, and the median float32 / bf16 ratio."""
    batch = make_batch(s, rollout(s, s.sampler))

    def run(stage: str, precision: str) -> float:
        _sync(s.policy.device)
        t0 = time.perf_counter()
        if stage == "loss":
            loss_and_grad(s, batch, precision)
        else:
            with stage_precision(precision, s.policy.device):
                rollout(s, s.sampler) if stage == "rollout" else logp(s, batch)
        _sync(s.policy.device)
        return time.perf_counter() - t0

    jobs = [(st, pr) for st in STAGES for pr in PRECISIONS]
    for job in jobs:  # warm-up
        run(*job)
    seconds: dict[tuple[str, str], list[float]] = {j: [] for j in jobs}
    for r in range(repeats):
        order = jobs[:]
        random.Random(r).shuffle(order)
        for job in order:
            seconds[job].append(run(*job))
        log(f"{s.name}: repeat {r + 1}/{repeats}")
    rows = []
    for st in STAGES:
        ratios = [a / b for a, b in zip(seconds[(st, "float32")], seconds[(st, "bfloat16")])]
        rows.append({"stage": st, "float32_s": statistics.median(seconds[(st, "float32")]),
                     "bfloat16_s": statistics.median(seconds[(st, "bfloat16")]), "ratio": statistics.median(ratios),
                     "ratio_min": min(ratios), "ratio_max": max(ratios)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["builtin", "moderate"], choices=["builtin", "moderate"])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--gen", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    result: dict[str, Any] = {"args": vars(args), "torch_threads": torch.get_num_threads(), "models": {}}
    for name in args.models:
        device = torch.device(args.device)
        s = builtin_setting(device) if name == "builtin" else moderate_setting(
            args.hidden, args.layers, args.vocab, args.prompt, args.gen, device)
        num, rows = numerics(s), speed(s, args.repeats, log)
        result["models"][s.name] = {"numerics": num, "speed": rows}
        print(f"\n{s.name}: rows {s.prompt_ids.shape[0]}, prompt {s.prompt_ids.shape[1]}, gen "
              f"{s.sampler.gen_length}, {s.sampler.steps} steps; {args.repeats} repeats interleaved, "
              f"{torch.get_num_threads()} threads, {args.device}")
        print("  numerics (bf16 autocast vs float32): " + ", ".join(f"{k} {v:.4g}" for k, v in num.items()))
        print(f"  {'stage':<8} {'float32 s':>10} {'bf16 s':>10} {'fp32/bf16':>10}  range")
        for r in rows:
            print(f"  {r['stage']:<8} {r['float32_s']:>10.4f} {r['bfloat16_s']:>10.4f} {r['ratio']:>9.2f}x  "
                  f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
