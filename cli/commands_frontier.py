"""``dmpo frontier``: the accuracy-vs-NFE view of evaluations and sampler sweeps.

Reads run folders (their ``metrics.jsonl`` evaluation records: ``eval_accuracy`` and
``eval_mean_nfe``) and JSON-lines sweep files (one ``{"accuracy": ..., "mean_nfe": ...}``
object per line, with any label fields, as ``bench/compare.py`` writes in ``sweeps.jsonl``),
prints every point sorted by NFE with the Pareto-optimal ones marked (no other point is at
least as accurate with fewer forwards), and optionally plots them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from dmpo_core.errors import ConfigError

LABEL_KEYS = ("task", "model", "seed", "sampler", "gamma", "threshold")


def read_points(path: Path) -> list[dict[str, Any]]:
    """The accuracy/NFE points of a run folder (its last evaluation per step) or a sweep file."""
    if path.is_dir():
        metrics = path / "metrics.jsonl"
        if not metrics.exists():
            raise ConfigError([f"{path}: no metrics.jsonl (pass a run folder or a sweep .jsonl file)"],
                              source="dmpo frontier")
        out = []
        for line in metrics.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line) if line.strip() else {}
            if rec.get("eval") and rec.get("eval_mean_nfe") is not None:
                out.append({"label": f"{path.name} step {rec['step']}", "accuracy": rec["eval_accuracy"],
                            "mean_nfe": rec["eval_mean_nfe"]})
        return out
    if not path.exists():
        raise ConfigError([f"{path}: no such file or folder"], source="dmpo frontier")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            point = {"accuracy": float(rec["accuracy"]), "mean_nfe": float(rec["mean_nfe"])}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ConfigError([f"{path}:{n}: not a sweep record with accuracy and mean_nfe ({err})"],
                              source="dmpo frontier") from err
        label = " ".join(f"{k}={rec[k]}" for k in LABEL_KEYS if k in rec)
        out.append({"label": label or f"{path.name}:{n}", **point})
    return out


def pareto(points: list[dict[str, Any]]) -> list[bool]:
    """For each point: True when no other point has NFE <= its NFE and accuracy >= its accuracy,
    one of them strictly."""
    flags = []
    for p in points:
        dominated = any(q is not p and q["mean_nfe"] <= p["mean_nfe"] and q["accuracy"] >= p["accuracy"]
                        and (q["mean_nfe"] < p["mean_nfe"] or q["accuracy"] > p["accuracy"]) for q in points)
        flags.append(not dominated)
    return flags


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the accuracy-vs-NFE plot to this PNG file.")
def frontier(sources: tuple[Path, ...], plot_path: Path | None) -> None:
    """Accuracy vs NFE of run folders and sweep files (SOURCES); * marks the Pareto frontier."""
    points = [p for src in sources for p in read_points(src)]
    if not points:
        raise ConfigError(["no evaluation with a mean NFE in the sources"], source="dmpo frontier")
    points.sort(key=lambda p: (p["mean_nfe"], -p["accuracy"]))
    click.echo(f"{'':1} {'NFE':>7} {'accuracy %':>10}  point")
    for p, best in zip(points, pareto(points)):
        click.echo(f"{'*' if best else ' '} {p['mean_nfe']:7.2f} {100 * p['accuracy']:10.1f}  {p['label']}")
    if plot_path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.scatter([p["mean_nfe"] for p in points], [100 * p["accuracy"] for p in points], s=12)
        front = [p for p, best in zip(points, pareto(points)) if best]
        ax.plot([p["mean_nfe"] for p in front], [100 * p["accuracy"] for p in front], color="C1", label="frontier")
        ax.set_xlabel("mean NFE per item")
        ax.set_ylabel("accuracy %")
        ax.legend(fontsize=7)
        fig.tight_layout()
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(plot_path, dpi=110)
        plt.close(fig)
        click.echo(f"plot: {plot_path}")
