"""``dmpo plot RUN_DIR [RUN_DIR ...]``: a PNG of a run's curves, or several runs overlaid.

Six panels, each with a title and its unit: rollout reward, held-out metric, effective sample
size, loss, function evaluations (NFE: model forwards) and seconds per step. Per-step series
are drawn as their raw points (faint) under a trailing moving average; evaluations, which are
few, as points joined by lines. Each run has one colour in every panel, named in the legend.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import click

from dmpo_core.errors import DataError

#: ``(title, y-axis label with its unit, metrics key)`` of the per-step panels.
STEP_PANELS: tuple[tuple[str, str, str], ...] = (
    ("Rollout reward", "mean reward per completion (task units)", "reward_mean"),
    ("Effective sample size", "normalised ESS (1 = uniform weights)", "ess_mean"),
    ("Loss", "objective value per step", "loss"),
    ("Seconds per step", "wall-clock seconds", "time/total"),
)
NFE_PANEL = ("Function evaluations (NFE)", "model forwards", "nfe")
EVAL_PANEL = ("Held-out metric", "% of the held-out items", "eval")

#: Evaluation keys that are not a metric of the task.
NOT_METRICS = frozenset({"eval", "eval_seconds", "eval_mean_nfe", "eval_n", "step"})


@attrs.frozen
class Run:
    """The records of one run folder."""

    name: str
    steps: list[dict[str, Any]]
    """Training-step records, in step order."""
    evals: list[dict[str, Any]]
    """Evaluation records (``"eval": true``), in step order."""

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """Steps and values of ``key`` over the training records that have it."""
        rows = [(r["step"], float(r[key])) for r in self.steps if isinstance(r.get(key), (int, float))]
        return [s for s, _ in rows], [v for _, v in rows]

    def metrics(self) -> list[str]:
        """The task's evaluation metrics (``eval_accuracy`` ...), in first-seen order."""
        seen: dict[str, None] = {}
        for record in self.evals:
            for key, value in record.items():
                if key.startswith("eval_") and key not in NOT_METRICS and isinstance(value, (int, float)):
                    seen.setdefault(key, None)
        return list(seen)


def read_run(folder: str | Path, name: str | None = None) -> Run:
    """The records of ``folder/metrics.jsonl``; a torn line (a killed run's last) is skipped.

    Raises:
        DataError: no metrics file, or one without a single record.
    """
    path = Path(folder) / "metrics.jsonl"
    if not path.is_file():
        raise DataError(str(path), "no metrics file; pass a folder a `dmpo train` run wrote (--output-dir)")
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    if not records:
        raise DataError(str(path), "holds no step or evaluation record yet")
    records.sort(key=lambda r: r["step"])
    return Run(name=name or Path(folder).name, steps=[r for r in records if not r.get("eval")],
               evals=[r for r in records if r.get("eval")])


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start): ``([1, 2, 3, 4], 2) -> [1, 1.5, 2.5, 3.5]``."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def default_window(runs: Sequence[Run]) -> int:
    """5% of the longest run's steps, at least 1."""
    return max(1, max((len(r.steps) for r in runs), default=0) // 20)


def run_names(folders: Sequence[str | Path]) -> list[str]:
    """Legend names: each folder's name, with its parent's where two names are equal."""
    names = [Path(f).resolve().name for f in folders]
    return [f"{Path(f).resolve().parent.name}/{n}" if names.count(n) > 1 else n for f, n in zip(folders, names)]


def figure(runs: Sequence[Run], *, window: int | None = None) -> Any:
    """The matplotlib figure of ``runs`` (2 x 3 panels); see the module docstring."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = window or default_window(runs)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    panels = [EVAL_PANEL, STEP_PANELS[0], STEP_PANELS[1], STEP_PANELS[2], NFE_PANEL, STEP_PANELS[3]]
    for ax, (title, unit, key) in zip(axes.flat, panels):
        drawn = False
        for i, run in enumerate(runs):
            colour = colours[i % len(colours)]
            if key == "eval":
                drawn |= _draw_evals(ax, run, colour, lambda k: f"{run.name}: {k[len('eval_'):]}", percent=True)
            elif key == "nfe":
                drawn |= _draw_steps(ax, run, key, colour, w, f"{run.name}: rollout")
                drawn |= _draw_evals(ax, run, colour, lambda k: f"{run.name}: evaluation", only="eval_mean_nfe")
            else:
                drawn |= _draw_steps(ax, run, key, colour, w, run.name)
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, f"not recorded ({key})", ha="center", va="center", transform=ax.transAxes, alpha=0.6)
    smooth = f"trailing mean over {w} steps; raw points faint" if w > 1 else "raw values"
    fig.suptitle(f"dmpo: {', '.join(r.name for r in runs)} ({smooth})")
    return fig


def _draw_steps(ax: Any, run: Run, key: str, colour: str, window: int, label: str) -> bool:
    steps, values = run.series(key)
    if not steps:
        return False
    if window > 1:
        ax.plot(steps, values, ".", color=colour, alpha=0.2, markersize=3)
        ax.plot(steps, moving_average(values, window), "-", color=colour, label=label)
    else:
        ax.plot(steps, values, "-", color=colour, label=label)
    return True


def _draw_evals(ax: Any, run: Run, colour: str, label: Any, *, percent: bool = False, only: str | None = None) -> bool:
    keys = [only] if only else run.metrics()
    drawn = False
    for j, key in enumerate(keys):
        rows = [(r["step"], float(r[key])) for r in run.evals if isinstance(r.get(key), (int, float))]
        if not rows:
            continue
        scale = 100.0 if percent else 1.0
        ax.plot([s for s, _ in rows], [v * scale for _, v in rows], ["o-", "s--", "^:", "d-."][j % 4],
                color=colour, markersize=4, label=label(key))
        drawn = True
    return drawn


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="PNG path (default: RUN_DIR/metrics.png for one run, ./comparison.png for several).")
@click.option("--smooth", type=click.IntRange(min=1), default=None,
              help="Steps in the trailing moving average (1 = raw values; default: 5% of the longest run).")
def plot(run_dirs, output, smooth) -> None:
    """Plot training runs to a PNG: reward, held-out metric, ESS, loss, NFE and seconds per step.

    Several RUN_DIRs are overlaid in one figure, one colour each, for comparisons:
    `dmpo plot runs/a runs/b --output a-vs-b.png`.
    """
    runs = [read_run(folder, name) for folder, name in zip(run_dirs, run_names(run_dirs))]
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise DataError("matplotlib", "is not installed; pip install 'dllm-dmpo[plot]'") from err
    out = Path(output) if output else (Path(run_dirs[0]) / "metrics.png" if len(runs) == 1 else Path("comparison.png"))
    fig = figure(runs, window=smooth)
    fig.savefig(out, dpi=110)
    click.echo(str(out))
