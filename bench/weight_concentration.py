"""How much of a group do DMPO's weights use, next to GRPO's advantages, on the base's own rollouts?

    python bench/weight_concentration.py [--model builtin:sudoku-tiny] [--batches 4] [--alphas 0.04 0.1 0.5 1]

The earlier prototype (docs/results.md) suggested that at alpha 0.04 DMPO's loss is close to "cross-entropy of
the best sample (minus that of the worst)". This measures it directly, with no training: it
draws rollout batches from the base with the shipped recipe's sampler (B=8 prompts x G=8,
temperature 1), scores them, and, at the first step (the reference IS the rollout policy, so
log_rnd = 0 exactly), computes per group

* ``max w``: the largest DMPO weight ``softmax(r / alpha)`` (1/G = 0.125 is uniform, 1 is one sample);
* ``ESS/G``: the normalised effective sample size of the weights;
* ``|A| on best+worst``: the share of the absolute advantage mass (``dmpo-mean``: ``w - 1/G``)
  that sits on the best and the worst sample of the group; GRPO's share is printed beside it;
* ``corr(A, GRPO)``: the correlation of DMPO-mean and GRPO advantages over the rows.

Groups whose rewards are all equal are left out (neither method learns from them).
"""

from __future__ import annotations

import argparse
import statistics

import torch

from dmpo_core.objective.grpo import group_normalised_advantages
from dmpo_core.training import TrainConfig, build
from dmpo_core.training.loop import batch_items
from dmpo_core.training.rollout import decode_completions, rewards_tensor, sample_group_batch, score_rewards
from dmpo.backends import builtin


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="builtin:sudoku-tiny")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.04, 0.1, 0.5, 1.0])
    args = ap.parse_args(argv)
    cfg = TrainConfig.from_dict({**builtin.recommended_config(args.model), "eval_size": 0})
    comp = build.build_components(cfg)
    rc, gen = cfg.rollout, torch.Generator().manual_seed(0)
    train_items = list(comp.task.train_items())
    rewards = []
    for step in range(args.batches):
        items = batch_items(train_items, step, rc.prompts_per_step, cfg.seed)
        s = sample_group_batch(comp.policy, comp.sampler, comp.task, items, group_size=rc.group_size,
                               gen_length=rc.gen_length, batch_rows=rc.batch_rows, generator=gen)
        texts = decode_completions(comp.policy.tokenizer, s.completion_ids, comp.policy.eos_id)
        rewards.append(rewards_tensor(score_rewards(comp.task, s.texts, texts, s.items)).view(-1, rc.group_size))
    r = torch.cat(rewards).double()  # [groups, G]
    keep = (r.max(dim=1).values > r.min(dim=1).values)  # groups with a signal
    r = r[keep]
    g = r.shape[1]
    grpo, _ = group_normalised_advantages(r.reshape(-1).float(), g, eps=1e-4, scale="group")
    grpo = grpo.view(-1, g).double()  # [groups, G]
    order = r.argsort(dim=1)  # [groups, G]
    ends = torch.zeros_like(r, dtype=torch.bool).scatter(1, order[:, [0, -1]], True)  # best and worst
    share_grpo = statistics.mean(float((grpo.abs() * ends).sum(1)[i] / grpo.abs().sum(1)[i]) for i in range(len(r)))
    print(f"{len(r)} groups of {g} with unequal rewards (of {int(keep.numel())}); reward mean {float(r.mean()):.3f}, "
          f"within-group std {float(r.std(dim=1).mean()):.3f}")
    print(f"{'alpha':>6} {'max w':>7} {'ESS/G':>7} {'|A| on best+worst':>18} {'GRPO same':>10} {'corr(A, GRPO)':>14}")
    for alpha in args.alphas:
        w = torch.softmax(r / alpha, dim=1)  # [groups, G]
        ess = 1.0 / (w**2).sum(1) / g  # [groups]
        adv = w - 1.0 / g  # [groups, G]: dmpo-mean
        share = ((adv.abs() * ends).sum(1) / adv.abs().sum(1)).mean()
        corr = torch.corrcoef(torch.stack([adv.reshape(-1), grpo.reshape(-1)]))[0, 1]
        print(f"{alpha:>6g} {float(w.max(1).values.mean()):>7.3f} {float(ess.mean()):>7.3f} {float(share):>18.3f} "
              f"{share_grpo:>10.3f} {float(corr):>14.3f}")


if __name__ == "__main__":
    main()
