"""A live progress bar for training: reward, ESS and step time."""

from __future__ import annotations

import math
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainProgress:
    """Context manager; ``update(record)`` per step, ``note_eval(record)`` per evaluation."""

    def __init__(self, total: int, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"), console=self.console, disable=quiet,
        )
        self.task = self.progress.add_task("train", total=total, stats="")

    def __enter__(self) -> "TrainProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def update(self, record: dict[str, Any]) -> None:
        stats = (f"reward {record.get('reward_mean', math.nan):.3f}  ess {record.get('ess_mean', math.nan):.2f}  "
                 f"loss {record.get('loss', math.nan):+.4f}  {record.get('time/total', math.nan):.2f}s/step")
        self.progress.update(self.task, completed=record["step"], stats=stats)

    def note_eval(self, record: dict[str, Any]) -> None:
        shown = "  ".join(f"{k[5:]} {v:.3f}" for k, v in record.items()
                          if k.startswith("eval_") and isinstance(v, float) and k != "eval_seconds")
        line = f"step {record['step']}: eval {shown}"
        if self.quiet:
            click.echo(line, err=True)
        else:
            self.progress.console.print(line)

    def note(self, message: str) -> None:
        """A one-line notice (a damaged checkpoint passed over ...), shown even when quiet."""
        line = f"notice: {message}"
        if self.quiet:
            click.echo(line, err=True)
        else:
            self.progress.console.print(line)
