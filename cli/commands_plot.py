"""``dmpo plot RUN_DIR``: a PNG of reward, held-out accuracy, ESS and loss over steps."""

from __future__ import annotations

import json
from pathlib import Path

import click

from dmpo_core.errors import DataError

PANELS = (
    ("reward_mean", "mean reward"),
    ("eval", "held-out metric"),
    ("ess_mean", "ESS (normalised)"),
    ("loss", "loss"),
)


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="PNG path (default: RUN_DIR/metrics.png).")
def plot(run_dir, output) -> None:
    """Plot a run's metrics (reward, held-out accuracy, ESS, loss over steps) to a PNG."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise DataError(str(path), "no metrics file; pass the folder a `dmpo train` run wrote (--output-dir)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise DataError("matplotlib", "is not installed; pip install 'dllm-dmpo[plot]'") from err
    records = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    steps = [r for r in records if not r.get("eval")]
    evals = [r for r in records if r.get("eval")]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for ax, (key, title) in zip(axes.flat, PANELS):
        if key == "eval":
            keys = sorted({k for r in evals for k in r if k.startswith("eval_") and k not in ("eval_seconds", "eval_mean_nfe", "eval_n")})
            for k in keys:
                ax.plot([r["step"] for r in evals if k in r], [r[k] for r in evals if k in r], marker="o", label=k[5:])
            if keys:
                ax.legend()
        else:
            xs = [r["step"] for r in steps if key in r]
            ax.plot(xs, [r[key] for r in steps if key in r])
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    out = Path(output) if output else Path(run_dir) / "metrics.png"
    fig.savefig(out, dpi=110)
    click.echo(str(out))
