"""Does DMPO learn on the built-in model, and does the weight baseline matter?

    python bench/learning.py [--steps 250] [--seeds 0 1 2] [--variants all] [--out bench-results]
    python bench/learning.py --report DIR1/results.json DIR2/results.json   # merge parallel runs

For each variant and seed it trains ``builtin:sudoku-tiny`` with the shipped recipe for
a fixed number of rollout batches (equal rollouts across variants: B*G = 64 rows per
step) and evaluates on the same 256 held-out puzzles before and after. It prints

* a table of base vs final held-out blank-cell accuracy (mean and spread over seeds;
  "final" averages the last two evaluations, since one evaluation is noisy);
* the time split of a training step (rollout, reward, log-prob estimation, loss
  forward+backward, optimizer, other = framework overhead) measured in the same run.

Variants:
  dmpo-g8         the shipped recipe (mean baseline), G=8, B=8
  paper-g8        the paper's negative baseline, G=8, B=8
  negative-g4     negative baseline, G=4, B=16
  none-g4         no baseline, G=4, B=16
  negative-g16    negative baseline, G=16, B=4
  none-g16        no baseline, G=16, B=4
  exact-g8        the shipped recipe with random-remask rollouts and exact trajectory
                  log-likelihoods (evaluation keeps greedy low-confidence decoding)
  bf16-g8         the shipped recipe with bf16 autocast (float32 master weights) in the
                  rollout, log-prob and loss stages; evaluations stay float32
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from dmpo_core.training import TrainConfig, build, train
from dmpo.backends import builtin
from dmpo.cli import configfile

VARIANTS = {
    "dmpo-g8": {},
    "paper-g8": {"weighting": {"scheme": "dmpo"}},
    "negative-g4": {"rollout": {"group_size": 4, "prompts_per_step": 16}, "weighting": {"scheme": "dmpo"}},
    "none-g4": {"rollout": {"group_size": 4, "prompts_per_step": 16}, "weighting": {"scheme": "dmpo-none"}},
    "negative-g16": {"rollout": {"group_size": 16, "prompts_per_step": 4}, "weighting": {"scheme": "dmpo"}},
    "none-g16": {"rollout": {"group_size": 16, "prompts_per_step": 4}, "weighting": {"scheme": "dmpo-none"}},
    "exact-g8": {"rollout": {"sampler": "random-remask", "sampler_options": {"record_logp": True}},
                 "eval_sampler": "low-confidence"},
    "bf16-g8": {"precision": {"rollout": "bfloat16", "logp": "bfloat16", "loss": "bfloat16"}},
}
TIMES = ("rollout", "reward", "logp", "weights", "loss_fwd_bwd", "optimizer", "other")


def variant_config(variant: str, seed: int, steps: int) -> TrainConfig:
    """The shipped recipe with a variant's overrides, for exactly ``steps`` rollout batches.

    The recipe's time budget is removed, so every variant and seed trains on the same
    number of rollouts whatever the machine's speed.
    """
    data = configfile.merge(builtin.recommended_config("builtin:sudoku-tiny"), VARIANTS[variant])
    data = configfile.merge(data, {"seed": seed, "total_steps": steps, "eval_every": max(steps // 5, 1),
                                   "save_every": 0, "max_minutes": None})
    return TrainConfig.from_dict(data)


def run_one(variant: str, seed: int, steps: int, out: Path) -> dict:
    cfg = variant_config(variant, seed, steps)
    run_dir = out / f"{variant}-s{seed}"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    comp = build.build_components(cfg)
    t0 = time.perf_counter()
    train(cfg, comp, run_dir)
    wall = time.perf_counter() - t0
    records = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r.get("eval")]
    steps_r = [r for r in records if not r.get("eval")]
    times = {k: statistics.mean(r[f"time/{k}"] for r in steps_r) for k in TIMES}
    times["total"] = statistics.mean(r["time/total"] for r in steps_r)
    return {
        "variant": variant, "seed": seed, "steps": steps, "base": evals[0]["eval_accuracy"],
        "final": statistics.mean(e["eval_accuracy"] for e in evals[-2:]),
        "last": evals[-1]["eval_accuracy"], "wall_s": wall, "times": times,
    }


def spread(values: list[float]) -> str:
    m = statistics.mean(values)
    if len(values) == 1:
        return f"{100 * m:5.1f}       "  # one run: no spread to show
    return f"{100 * m:5.1f} ± {100 * statistics.stdev(values):4.1f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", type=Path, default=Path("bench-results/learning"))
    ap.add_argument("--report", type=Path, nargs="+", metavar="RESULTS_JSON",
                    help="train nothing: print the table from results.json files of earlier runs (e.g. one "
                         "per process when seeds or variants were run in parallel)")
    args = ap.parse_args(argv)
    if args.report:
        results = [r for path in args.report for r in json.loads(path.read_text())]
        report(results, sorted({r["steps"] for r in results if "steps" in r}) or "?")
        return
    results = []
    for variant in args.variants:
        for seed in args.seeds:
            res = run_one(variant, seed, args.steps, args.out)
            results.append(res)
            print(f"{variant} seed {seed}: base {100 * res['base']:.1f} -> final {100 * res['final']:.1f} "
                  f"({res['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    report(results, args.steps)


def report(results: list[dict], steps: object) -> None:
    """Print the accuracy table (mean ± spread over seeds) and the step-time split."""
    variants = list(dict.fromkeys(r["variant"] for r in results))
    seeds = sorted({r["seed"] for r in results})
    print(f"\nheld-out blank-cell accuracy, 256 puzzles, {steps} steps x 64 rollouts, seeds {seeds}")
    print(f"{'variant':<14} {'runs':>4} {'base %':>13} {'final %':>13} {'change (points)':>17}")
    for variant in variants:
        rows = [r for r in results if r["variant"] == variant]
        change = [r["final"] - r["base"] for r in rows]
        print(f"{variant:<14} {len(rows):>4} {spread([r['base'] for r in rows]):>13} {spread([r['final'] for r in rows]):>13} "
              f"{spread(change):>17}")
    print("\ntime split of a training step (mean over steps and runs)")
    total = statistics.mean(r["times"]["total"] for r in results)
    for key in TIMES:
        v = statistics.mean(r["times"][key] for r in results)
        print(f"  {key:<13} {v * 1000:8.1f} ms  {100 * v / total:5.1f} %")
    print(f"  {'total':<13} {total * 1000:8.1f} ms")
    model = sum(statistics.mean(r["times"][k] for r in results) for k in ("rollout", "logp", "loss_fwd_bwd", "optimizer"))
    print(f"framework overhead (reward, weights, other: outside model forward/backward, sampling and the "
          f"optimizer): {100 * (1 - model / total):.1f} % of a step")


if __name__ == "__main__":
    main()
