"""Run-folder checkpoints that lose nothing and survive a kill mid-save.

Layout of a run folder::

    RUN/config.json                      the TrainConfig (a resumed run must match it)
    RUN/metrics.jsonl                    one JSON object per step (and per evaluation)
    RUN/checkpoints/step-000050/policy/  the policy, in its backend's checkpoint format
    RUN/checkpoints/step-000050/trainer.pt
        step, trainable tensors, reference snapshot, optimizer/scheduler state,
        RNG states, counters
    RUN/checkpoints/step-000050/rollout.pt   the last rollout batch
    RUN/checkpoints/latest                the name of the newest complete checkpoint

Every checkpoint is written into a temporary folder and renamed into place, and
``latest`` is replaced atomically afterwards, so a kill at any moment leaves the
previous checkpoint loadable.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import attrs
import torch

from dmpo_core.errors import CheckpointError

CHECKPOINTS = "checkpoints"
LATEST = "latest"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def batch_to_dict(batch: Any) -> dict[str, Any]:
    """Tensors and scalars of a RolloutBatch (items are dropped: they are re-derivable from the task)."""
    out = {}
    for field in attrs.fields(type(batch)):
        value = getattr(batch, field.name)
        if field.name == "items":
            continue
        out[field.name] = value.cpu() if isinstance(value, torch.Tensor) else value
    return out


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    policy: Any,
    trainer_state: dict[str, Any],
    rollout: dict[str, Any] | None,
    keep: int,
) -> Path:
    """Write ``checkpoints/step-NNNNNN`` atomically and point ``latest`` at it; keep ``keep`` newest."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    final = root / name
    tmp = root / f".tmp-{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    policy.save(str(tmp / "policy"))
    torch.save(trainer_state, tmp / "trainer.pt")
    if rollout is not None:
        torch.save(rollout, tmp / "rollout.pt")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _atomic_write_text(root / LATEST, name)
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))
    latest = (root / LATEST).read_text().strip() if (root / LATEST).exists() else None
    for old in steps[:-keep]:
        if old.name != latest:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None when there is none."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    if not pointer.exists():
        return None
    path = root / pointer.read_text().strip()
    if not (path / "trainer.pt").exists():
        raise CheckpointError(str(path), "the checkpoint named by 'latest' is incomplete (trainer.pt missing)")
    return path


def load_trainer_state(path: Path) -> dict[str, Any]:
    """Read ``trainer.pt`` of a checkpoint, executing nothing from it.

    A run folder is data, and a planted or tampered file must not run code on ``--resume``:
    ``weights_only=True`` restricts unpickling to tensors and plain containers (dict, list,
    tuple, str, numbers), which is all the trainer state holds. A file that needs anything
    else is refused with a one-line error, whatever it would have done.
    """
    file = Path(path) / "trainer.pt"
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - the unpickler raises many error types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(str(file), f"cannot be read safely ({reason}); "
                              "only tensors and plain containers are accepted") from err
    if not isinstance(state, dict):
        raise CheckpointError(str(file), f"holds a {type(state).__name__}, not the trainer state mapping")
    return state


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Write ``config.json`` atomically."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    _atomic_write_text(Path(run_dir) / "config.json", json.dumps(config, indent=2, sort_keys=True))


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``config.json``, or None for a folder that holds no run."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())
