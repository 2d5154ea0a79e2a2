"""``dmpo eval --sweep KEY=V1,V2,...``: one evaluation per value of one sampler option.

Each setting gives one row: the option's value, the task's metrics, ``mean_nfe`` (forwards
per item), ``seconds`` and ``tokens_per_s`` (completion tokens ``items x gen_length`` per
second of sampling and scoring). Rows go to a CSV (``.csv``) or JSON-lines file, and a PNG
next to it plots the accuracy against the mean NFE (each point labelled by its value) and the
tokens per second per value.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dmpo.cli import configfile

from dmpo_core.errors import ConfigError


def parse_sweep(text: str) -> tuple[str, list[Any]]:
    """``"threshold=0.5,0.7,0.9"`` -> ``("threshold", [0.5, 0.7, 0.9])`` (values parsed as YAML)."""
    key, sep, raw = text.partition("=")
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if not sep or not key.strip() or not values:
        raise ConfigError([f"--sweep {text!r}: expected KEY=V1,V2,... e.g. --sweep threshold=0.5,0.7,0.9"],
                          source="dmpo eval")
    key = key.strip()
    parsed = [configfile.apply_sets({}, [f"{key}={v}"])[key] for v in values]
    if len({json.dumps(v, sort_keys=True, default=str) for v in parsed}) != len(parsed):
        raise ConfigError([f"--sweep {text!r}: a value is repeated"], source="dmpo eval")
    return key, parsed


def sweep_row(key: str, value: Any, metrics: Mapping[str, float], *, items: int, gen_length: int) -> dict[str, Any]:
    """One row of the sweep table."""
    seconds = float(metrics.get("seconds", 0.0))
    row: dict[str, Any] = {key: value, **metrics}
    row["tokens_per_s"] = items * gen_length / seconds if seconds > 0 else float("nan")
    return row


def write_rows(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write the rows as CSV (``.csv``) or JSON lines (anything else); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        fields = list(dict.fromkeys(k for row in rows for k in row))
        with open(out, "w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    else:
        with open(out, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
    return out


def metric_name(rows: Sequence[Mapping[str, Any]]) -> str:
    """The accuracy-like column to plot: ``accuracy`` when present, else the first task metric."""
    skip = {"mean_nfe", "seconds", "tokens_per_s"}
    names = [k for k in rows[0] if k not in skip and isinstance(rows[0][k], (int, float))]
    return "accuracy" if "accuracy" in names else names[1] if len(names) > 1 else names[0]


def plot_rows(path: str | Path, key: str, rows: Sequence[Mapping[str, Any]]) -> Path | None:
    """A PNG at ``path``: metric vs mean NFE, and tokens/s per value; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    metric = metric_name(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    nfe = [r["mean_nfe"] for r in rows]
    left.plot(nfe, [r[metric] for r in rows], marker="o")
    for r in rows:
        left.annotate(f"{key}={r[key]}", (r["mean_nfe"], r[metric]), textcoords="offset points", xytext=(4, 4))
    left.set_xlabel("mean NFE per item")
    left.set_ylabel(metric)
    left.grid(alpha=0.3)
    right.bar([str(r[key]) for r in rows], [r["tokens_per_s"] for r in rows])
    right.set_xlabel(key)
    right.set_ylabel("tokens / s")
    right.grid(alpha=0.3, axis="y")
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
