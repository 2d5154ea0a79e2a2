"""DMPO vs diffu-GRPO vs DiFFPO on the built-in tasks, at equal rollouts and at equal wall time.

    python bench/compare.py [--tasks sudoku countdown] [--methods dmpo dmpo-paper diffu-grpo diffpo]
                            [--seeds 0 1 2] [--steps 1000] [--eval-every 50] [--eval-size 256]
                            [--workers 1] [--out bench-results/compare]
                            [--lrs 5e-5 1e-4 2e-4 4e-4]   # a learning-rate grid: every method gets the same tries
                            [--lr countdown:dmpo=1e-4 ...] # one method's learning rate on one task
    python bench/compare.py --report bench-results/compare/results.json [more.json runs.jsonl ...] [--seeds 0 1]
                            [--lr countdown:dmpo=1e-4 ...] [--out DIR]
                                                          # table and plots again, several results merged
    python bench/compare.py --signals bench-results/compare/runs  # reward, gradient norm, weights per 50 steps
    python bench/compare.py --tuning bench-results/tune/results.jsonl  # the grid's tries and each pick

Every run starts from the task's built-in base with its shipped recipe and changes only what
the method is (a baseline is never handicapped: each method keeps its own paper's defaults
where the recipe does not fix the scale of the run):

  dmpo        the shipped recipe as is (dmpo-mean, alpha 0.04, WDCE, R=2, 1 gradient step per batch)
  dmpo-paper  ``--preset paper`` (the official code's update: negative baseline, G=16, 8 gradient
              steps per batch, R=4, clip 0.2 on a 0.25-scaled loss, ...) with B = 4 prompts so that
              every method draws B*G = 64 rollouts per step
  diffu-grpo  scheme grpo + objective diffu-grpo (d1's defaults: p_mask 0.15, clip 0.2, beta 0.04)
  diffpo      scheme grpo + objective diffpo with the diffpo-eb sampler (the policy picks its
              entropy budget); evaluated with its own greedy diffpo-eb sampler, the others with the
              recipe's greedy low-confidence evaluation

Equal rollouts: every method draws 64 rollouts per step, so step ``s`` of every method has seen
the same number of completions. Equal wall time: per task, the budget ``T`` is the shortest
mean training time (steps only, evaluations excluded) over the methods at the last step; each
run's accuracy at ``T`` is its last evaluation whose cumulative training time is <= ``T``.
Runs are interleaved (seed, task, method) so that a machine shared with other work slows every
method alike; the wall-time figures are still only as good as the machine was quiet.

Per run it also sweeps the eb (entropy budgets) and fast-dllm (thresholds) samplers on the
trained model, and once per task on the base, for the accuracy-vs-NFE frontier
(``dmpo frontier OUT/sweeps.jsonl`` prints and plots it; ``table.md`` ends with the sweeps' accuracy / NFE
per model, next to each method's own evaluation sampler at step 0 and at its last step).

Tuning: ``--lrs`` runs every (task, method, seed) at each learning rate of the grid (the same tries
for every method); ``--tuning`` lists the tries and picks, per task and method, the rate with the
highest mean rollout reward over the last 50 training steps (a training signal: the held-out
problems that the table reports play no part in the pick). A run's ``lr`` is null when it keeps the
recipe's; a method at another rate is labelled ``METHOD@LR`` in the tables and plots.

Writes ``results.jsonl`` (a line per run as it finishes, so a stopped benchmark keeps its finished
runs), ``results.json``, ``sweeps.jsonl``, ``table.md`` and the plots
``<task>-rollouts.png``, ``<task>-seconds.png``, ``<task>-nfe.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from dmpo.backends import builtin
from dmpo.cli import configfile

TASKS = {"sudoku": "builtin:sudoku-tiny", "countdown": "builtin:countdown-tiny"}
METHODS: dict[str, dict[str, Any]] = {
    "dmpo": {},
    "dmpo-paper": {"rollout": {"prompts_per_step": 4}},  # with the paper preset: 4 x 16 = 64 rollouts
    "diffu-grpo": {"weighting": {"scheme": "grpo", "options": {}},
                   "loss": {"objective": "diffu-grpo", "options": {}}},
    "diffpo": {"weighting": {"scheme": "grpo", "options": {}}, "loss": {"objective": "diffpo", "options": {}},
               "rollout": {"sampler": "diffpo-eb", "sampler_options": {}}, "eval_sampler_options": None},
}
PRESET = {"dmpo-paper": "paper"}
SWEEP = [("eb", {"gamma": g}) for g in (0.01, 0.1, 0.5, 1.0, 2.0)] + [
    ("fast-dllm", {"threshold": t}) for t in (0.5, 0.7, 0.9)]


def method_config(task: str, method: str, seed: int, steps: int, eval_every: int, eval_size: int,
                  lr: float | None = None):
    """The task's recipe < the method's preset < its overrides < the run's scale (no time budget) < ``lr``."""
    from dmpo_core.training import TrainConfig
    from dmpo_core.training.presets import preset

    data = builtin.recommended_config(TASKS[task])
    if method in PRESET:
        data = configfile.layer(data, preset(PRESET[method]))
    for section, values in METHODS[method].items():  # a method's options replace the recipe's, never merge
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **values}
        else:
            data[section] = values
    data = configfile.layer(data, {"seed": seed, "total_steps": steps, "eval_every": eval_every,
                                   "eval_size": eval_size, "eval_batch_size": eval_size, "save_every": 0,
                                   "max_minutes": None})
    if lr is not None:
        data = configfile.layer(data, {"optim": {"lr": lr}})
    return TrainConfig.from_dict(data, source=f"{task}/{method}")


def sweep(policy: Any, task_obj: Any, cfg: Any, items: list, label: dict) -> list[dict]:
    """Accuracy and mean NFE of the eb and fast-dllm samplers at several settings (greedy)."""
    import torch

    from dmpo_core.training.build import make_sampler
    from dmpo_core.training.evaluate import evaluate

    rc = cfg.rollout
    out = []
    for name, options in SWEEP:
        sampler = make_sampler(name, {"gen_length": rc.gen_length, "block_length": rc.block_length,
                                      "temperature": 0.0}, options, path="sweep")
        metrics, _ = evaluate(policy, task_obj, sampler, items, batch_size=len(items), gen_length=rc.gen_length,
                              generator=torch.Generator().manual_seed(0))
        out.append({**label, "sampler": name, **options, "accuracy": metrics["accuracy"],
                    "mean_nfe": metrics["mean_nfe"]})
    return out


def rate(lr: float | None) -> str:
    """A run's learning rate as the tables and ``--lr`` write it: ``recipe`` or the number."""
    return "recipe" if lr is None else f"{lr:g}"


def label(method: str, lr: float | None) -> str:
    """``METHOD`` at the recipe's learning rate, ``METHOD@LR`` at another."""
    return method if lr is None else f"{method}@{rate(lr)}"


def run_one(task: str, method: str, seed: int, steps: int, eval_every: int, eval_size: int, out: Path,
            base_sweep: bool, trained_sweep: bool = True, lr: float | None = None) -> dict:
    """Train one (task, method, seed) at the recipe's learning rate or ``lr``; return its evaluations,
    sweeps and the mean rollout reward of its last 50 steps (the tuning signal)."""
    import torch

    from dmpo_core.training import build, train

    torch.set_num_threads(1)
    cfg = method_config(task, method, seed, steps, eval_every, eval_size, lr)
    run_dir = out / "runs" / f"{task}-{label(method, lr)}-s{seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    comp = build.build_components(cfg)
    items = list(comp.task.test_items())[:eval_size]
    sweeps = sweep(comp.policy, comp.task, cfg, items, {"task": task, "model": "base"}) if base_sweep else []
    t0 = time.perf_counter()
    train(cfg, comp, run_dir)
    wall = time.perf_counter() - t0
    records = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = 64
    seconds, step_s, evals = 0.0, {}, []
    for r in records:
        if not r.get("eval") and "time/total" in r:
            seconds += r["time/total"]
            step_s[r["step"]] = seconds
    for r in records:
        if r.get("eval"):
            evals.append({"step": r["step"], "rollouts": r["step"] * rows, "seconds": step_s.get(r["step"], 0.0),
                          "accuracy": r["eval_accuracy"], "mean_nfe": r.get("eval_mean_nfe")})
    if trained_sweep:
        sweeps += sweep(comp.policy, comp.task, cfg, items, {"task": task, "model": label(method, lr), "seed": seed})
    rewards = [r["reward_mean"] for r in records if not r.get("eval") and "reward_mean" in r]
    return {"task": task, "method": method, "lr": lr, "seed": seed, "steps": steps, "evals": evals, "wall_s": wall,
            "train_s": seconds, "sweeps": sweeps, "reward_last50": statistics.mean(rewards[-50:]) if rewards else None}


def _job(args: tuple) -> dict:
    return run_one(*args)


def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    m = statistics.mean(values)
    return f"{100 * m:.1f}" if len(values) == 1 else f"{100 * m:.1f} ± {100 * statistics.stdev(values):.1f}"


def at_seconds(run: dict, budget: float) -> float:
    """Accuracy of the last evaluation whose cumulative training time is within ``budget``."""
    within = [e for e in run["evals"] if e["seconds"] <= budget + 1e-9]
    return within[-1]["accuracy"]


def final(run: dict, steps: int | None = None) -> float:
    """The mean of the last two evaluations at or before ``steps`` (default: the run's length;
    one evaluation is noisy, docs/results.md)."""
    evals = [e for e in run["evals"] if steps is None or e["step"] <= steps]
    last = evals[-2:] if len(evals) > 2 else evals[-1:]
    return statistics.mean(e["accuracy"] for e in last)


def ordered(results: list[dict]) -> list[dict]:
    """Runs by task, method (the orders of TASKS and METHODS), learning rate and seed, whatever order they
    finished in, each with its ``name`` (``label``); a (task, method, lr, seed) given twice keeps its last copy."""
    runs = {}
    for r in results:
        r = {**r, "lr": r.get("lr")}
        r["name"] = label(r["method"], r["lr"])
        runs[(r["task"], r["method"], r["lr"], r["seed"])] = r
    rank = {name: i for i, name in enumerate([*TASKS, *METHODS])}
    return sorted(runs.values(), key=lambda r: (rank.get(r["task"], 99), r["task"], rank.get(r["method"], 99),
                                                r["method"], -1.0 if r["lr"] is None else r["lr"], r["seed"]))


def load(paths: list[Path]) -> list[dict]:
    """Runs from results files: ``results.json`` (a list) or ``results.jsonl`` (one run a line), merged."""
    out = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            out += [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            out += json.loads(text)
    return ordered(out)


def table(results: list[dict]) -> str:
    """One Markdown table per task: base, equal rollouts, equal wall time, per seed, cost.

    Equal rollouts compares every method at the shortest run's length ``S`` (the last two
    evaluations at or before ``S``), so results files of different lengths can be merged."""
    lines = []
    results = ordered(results)
    for task in dict.fromkeys(r["task"] for r in results):
        runs = [r for r in results if r["task"] == task]
        methods = list(dict.fromkeys(r["name"] for r in runs))
        budget = min(statistics.mean(r["train_s"] for r in runs if r["name"] == m) for m in methods)
        steps = min(r["steps"] for r in runs)
        lines += [f"### {task} (equal rollouts: step {steps} x 64 rollouts; equal wall time T = {budget:.0f} s "
                  "of training)", "",
                  "| method | steps | seeds | base % | final % (equal rollouts) | per seed | at T % (equal wall time) "
                  "| per seed | s/step | eval NFE |", "|---|---|---|---|---|---|---|---|---|---|"]
        for m in methods:
            rs = [r for r in runs if r["name"] == m]
            fin = [final(r, steps) for r in rs]
            at_t = [at_seconds(r, budget) for r in rs]
            nfe = statistics.mean(r["evals"][-1]["mean_nfe"] or 0 for r in rs)
            lines.append(f"| {m} | {'/'.join(str(v) for v in dict.fromkeys(r['steps'] for r in rs))} | "
                         f"{len(rs)} | {mean_sd([r['evals'][0]['accuracy'] for r in rs])} | {mean_sd(fin)} | "
                         f"{' / '.join(f'{100 * v:.1f}' for v in fin)} | {mean_sd(at_t)} | "
                         f"{' / '.join(f'{100 * v:.1f}' for v in at_t)} | "
                         f"{statistics.mean(r['train_s'] / r['steps'] for r in rs):.2f} | {nfe:.1f} |")
        lines.append("")
    return "\n".join(lines)


def frontier_table(results: list[dict]) -> str:
    """Per task, accuracy % / NFE of every sweep setting (mean over seeds) on the base and on each method's
    trained models, and of each method's own evaluation sampler at its last step; ``*`` marks the points
    that no other point of the task beats (at least as accurate with no more forwards, one strictly)."""
    lines = []
    for task in dict.fromkeys(r["task"] for r in results):
        runs = [r for r in results if r["task"] == task]
        sw = [s for r in runs for s in r["sweeps"]]
        if not sw:
            continue
        settings = list(dict.fromkeys((s["sampler"], s.get("gamma", s.get("threshold"))) for s in sw))
        cells: dict[tuple, tuple[float, float]] = {}
        for model in dict.fromkeys(s["model"] for s in sw):
            for st in settings:
                pts = [s for s in sw if s["model"] == model and (s["sampler"], s.get("gamma", s.get("threshold"))) == st]
                if pts:
                    cells[(model, st)] = (statistics.mean(s["accuracy"] for s in pts),
                                          statistics.mean(s["mean_nfe"] for s in pts))
        for m in dict.fromkeys(r["name"] for r in runs):
            rs = [r for r in runs if r["name"] == m]
            cells[(m, ("own", "step 0"))] = (statistics.mean(r["evals"][0]["accuracy"] for r in rs),
                                             statistics.mean(r["evals"][0]["mean_nfe"] or 0 for r in rs))
            cells[(m, ("own", "last"))] = (statistics.mean(r["evals"][-1]["accuracy"] for r in rs),
                                           statistics.mean(r["evals"][-1]["mean_nfe"] or 0 for r in rs))
        best = {k for k, (a, n) in cells.items()
                if not any((a2 >= a and n2 <= n) and (a2 > a or n2 < n) for a2, n2 in cells.values())}
        cols = settings + [("own", "step 0"), ("own", "last")]
        lines += [f"### {task}: accuracy % / mean NFE (greedy; sweeps: mean over the models' seeds)", "",
                  "| model | " + " | ".join(f"{a} {b}" for a, b in cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for model in dict.fromkeys(k[0] for k in cells):
            row = [f"{100 * cells[(model, c)][0]:.1f} / {cells[(model, c)][1]:.1f}"
                   f"{' *' if (model, c) in best else ''}" if (model, c) in cells else "-" for c in cols]
            lines.append(f"| {model} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def plots(results: list[dict], out: Path) -> None:
    """Accuracy vs rollouts, vs training seconds, vs evaluation NFE (mean over seeds per point)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for task in dict.fromkeys(r["task"] for r in results):
        runs = [r for r in results if r["task"] == task]
        for axis, label in (("rollouts", "rollouts"), ("seconds", "training seconds"), ("mean_nfe", "eval NFE")):
            fig, ax = plt.subplots(figsize=(5, 3.5))
            colour = {"base": "grey"}
            for m in dict.fromkeys(r["name"] for r in runs):
                rs = [r for r in runs if r["name"] == m]
                points = list(zip(*[[(e[axis] or 0, e["accuracy"]) for e in r["evals"]] for r in rs]))
                xs = [statistics.mean(p[0] for p in pt) for pt in points]
                ys = [100 * statistics.mean(p[1] for p in pt) for pt in points]
                colour[m] = ax.plot(xs, ys, marker="o", label=m)[0].get_color()
            if axis == "mean_nfe":  # the samplers' frontier on the base and the trained models
                sw = [s for r in runs for s in r["sweeps"]]
                for model in dict.fromkeys(s["model"] for s in sw):
                    pts = sorted((s["mean_nfe"], 100 * s["accuracy"]) for s in sw if s["model"] == model)
                    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=10, alpha=0.5, label=f"{model} sweep",
                               color=colour.get(model), marker="x" if model == "base" else "o")
            ax.set_xlabel(label)
            ax.set_ylabel("held-out accuracy %")
            ax.set_title(task)
            ax.legend(fontsize=6)
            fig.tight_layout()
            fig.savefig(out / f"{task}-{'nfe' if axis == 'mean_nfe' else axis}.png", dpi=110)
            plt.close(fig)


def report(results: list[dict], out: Path) -> None:
    results = ordered(results)
    text = table(results)
    front = frontier_table(results)
    text += ("\n" + front) if front else ""
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    with open(out / "sweeps.jsonl", "w", encoding="utf-8") as fh:
        for r in results:
            for s in r["sweeps"]:
                fh.write(json.dumps(s) + "\n")
    plots(results, out)
    print(text)


def tuning(results: list[dict]) -> str:
    """The learning-rate tries per task and method, and each pick: the rate with the highest mean (over the
    seeds) of the rollout reward over the last 50 training steps; held-out accuracy is shown, never used."""
    lines = ["| task | method | lr | seeds | rollout reward, last 50 steps | held-out final % | pick |",
             "|---|---|---|---|---|---|---|"]
    picks = []
    results = ordered(results)
    for task, method in dict.fromkeys((r["task"], r["method"]) for r in results):
        runs = [r for r in results if (r["task"], r["method"]) == (task, method) and r.get("reward_last50") is not None]
        tries: dict[float | None, list[dict]] = {}
        for r in runs:
            tries.setdefault(r["lr"], []).append(r)
        if not tries:
            continue
        best = max(tries, key=lambda lr: statistics.mean(r["reward_last50"] for r in tries[lr]))
        picks.append(f"{task}:{method}={rate(best)}")
        for lr, rs in tries.items():
            lines.append(f"| {task} | {method} | {rate(lr)} | "
                         f"{'/'.join(str(r['seed']) for r in rs)} | "
                         f"{statistics.mean(r['reward_last50'] for r in rs):.3f} | {mean_sd([final(r) for r in rs])} | "
                         f"{'yes' if lr == best else ''} |")
    return "\n".join(lines + ["", "picks: " + " ".join(picks)])


def parse_lr(specs: list[str]) -> dict[tuple[str, str], float | None]:
    """``TASK:METHOD=LR`` (LR a number or ``recipe``) -> {(task, method): lr}."""
    out = {}
    for spec in specs:
        key, _, value = spec.partition("=")
        task, _, method = key.partition(":")
        if task not in TASKS or method not in METHODS or not value:
            raise SystemExit(f"--lr {spec}: expected TASK:METHOD=LR with a task of {list(TASKS)} "
                             f"and a method of {list(METHODS)}")
        out[(task, method)] = None if value == "recipe" else float(value)
    return out


def recipe_lr(task: str, method: str) -> float:
    """The learning rate a method runs at on a task when the benchmark does not set one."""
    return method_config(task, method, 0, 1, 1, 1).optim.lr


SIGNALS = ("reward_mean", "grad_norm", "weight_max", "ess_mean", "log_rnd_mean", "groups_without_signal",
           "kl_mean")


def signals(runs_dir: Path, window: int = 50, seeds: list[int] | None = None) -> str:
    """What the updates saw: per task and method, the mean over seeds of each training record's ``SIGNALS``
    (those the method logs) over windows of ``window`` steps, from the run folders' ``metrics.jsonl``."""
    groups: dict[tuple[str, str], list[list[dict]]] = {}
    for metrics in sorted(runs_dir.glob("*-s*/metrics.jsonl")):
        name, seed = metrics.parent.name.rsplit("-s", 1)
        if seeds is not None and int(seed) not in seeds:
            continue
        task, method = name.split("-", 1)
        records = [json.loads(ln) for ln in metrics.read_text(encoding="utf-8").splitlines() if ln.strip()]
        groups.setdefault((task, method), []).append([r for r in records if not r.get("eval") and "step" in r])
    lines = [f"| task | method | seeds | steps | {' | '.join(SIGNALS)} |", "|---" * (len(SIGNALS) + 4) + "|"]
    for (task, method), runs in groups.items():
        last = max(r["step"] for rs in runs for r in rs)
        for lo in range(1, last + 1, window):
            rows = [r for rs in runs for r in rs if lo <= r["step"] < lo + window]
            cells = []
            for key in SIGNALS:
                vals = [float(r[key]) for r in rows if key in r]
                cells.append(f"{statistics.mean(vals):.3f}" if vals else "-")
            lines.append(f"| {task} | {method} | {len(runs)} | {lo}-{min(lo + window - 1, last)} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="default 0 1 2; with --report or --signals, only these seeds' runs")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--eval-size", type=int, default=256)
    ap.add_argument("--no-sweep", action="store_true", help="skip the eb/fast-dllm sweeps (base and trained models)")
    ap.add_argument("--workers", type=int, default=1, help="runs in parallel (processes, one thread each)")
    ap.add_argument("--out", type=Path, default=None, help="default bench-results/compare; with --report, "
                    "the first results file's folder")
    ap.add_argument("--report", type=Path, nargs="+", metavar="RESULTS",
                    help="train nothing: table and plots again from results.json / results.jsonl files (merged)")
    ap.add_argument("--lrs", type=float, nargs="+", default=None,
                    help="a learning-rate grid: every (task, method, seed) runs at each (the same tries for every method)")
    ap.add_argument("--lr", nargs="+", default=[], metavar="TASK:METHOD=LR",
                    help="one method's learning rate on one task (a number or 'recipe'), e.g. the picks of --tuning; "
                    "with --report, only the runs at these rates (and the others at the recipe's)")
    ap.add_argument("--tuning", type=Path, nargs="+", metavar="RESULTS",
                    help="train nothing: the learning-rate tries of results files and each method's pick")
    ap.add_argument("--signals", type=Path, metavar="RUNS_DIR",
                    help="train nothing: print the training signals of the run folders in RUNS_DIR (OUT/runs)")
    args = ap.parse_args(argv)
    if args.signals:
        print(signals(args.signals, seeds=args.seeds))
        return
    if args.tuning:
        print(tuning(load(args.tuning)))
        return
    if args.report:
        chosen = parse_lr(args.lr)  # with --lr, each (task, method) only at its given rate (the recipe's if unnamed)
        runs = [r for r in load(args.report) if (args.seeds is None or r["seed"] in args.seeds)
                and (not args.lr or r["lr"] == chosen.get((r["task"], r["method"])))]
        report(runs, args.out or args.report[0].parent)
        return
    args.seeds = args.seeds or [0, 1, 2]
    args.out = args.out or Path("bench-results/compare")
    chosen = parse_lr(args.lr)
    jobs = []
    for seed in args.seeds:  # interleaved, so a shared machine's load falls on every method alike
        for task in args.tasks:
            for method in args.methods:
                grid = args.lrs or [chosen.get((task, method))]
                for i, lr in enumerate(grid):
                    lr = None if lr == recipe_lr(task, method) else lr  # the recipe's own rate keeps its name
                    base_sweep = (seed == args.seeds[0] and method == args.methods[0] and i == 0
                                  and not args.no_sweep)
                    jobs.append((task, method, seed, args.steps, args.eval_every, args.eval_size, args.out,
                                 base_sweep, not args.no_sweep, lr))
    results = []
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / "results.jsonl"  # one line per finished run: a stopped benchmark keeps what it measured
    partial.write_text("")

    def done(res: dict) -> None:
        results.append(res)
        with open(partial, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(res) + "\n")
        print(f"{res['task']} {label(res['method'], res['lr'])} seed {res['seed']}: {100 * final(res):.1f} "
              f"({res['wall_s']:.0f} s)",
              file=sys.stderr, flush=True)

    if args.workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(args.workers) as pool:
            for res in pool.imap_unordered(_job, jobs):
                done(res)
    else:
        for job in jobs:
            done(_job(job))
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    report(results, args.out)


if __name__ == "__main__":
    main()
