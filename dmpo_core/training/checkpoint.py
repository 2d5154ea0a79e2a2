"""Run-folder checkpoints that lose nothing and survive a kill mid-save.

Layout of a run folder::

    RUN/config.json                      the TrainConfig (a resumed run must match it)
    RUN/metrics.jsonl                    one JSON object per step (and per evaluation)
    RUN/checkpoints/step-000050/policy/  the policy, in its backend's checkpoint format, with
                                         dmpo_recipe.json (how to run it: see training/recipe.py)
    RUN/checkpoints/step-000050/policy-hf/  the same in the stock transformers layout (when asked)
    RUN/checkpoints/step-000050/adapter/    the peft adapter alone (LoRA runs)
    RUN/checkpoints/step-000050/trainer.pt
        step, trainable tensors, reference snapshot, optimizer/scheduler state,
        RNG states, counters
    RUN/checkpoints/step-000050/rollout.pt   the last rollout batch
    RUN/checkpoints/step-000050/checksums.json   SHA-256 of every file above
    RUN/checkpoints/latest                the name of the newest complete checkpoint

Every checkpoint is written into a temporary folder and renamed into place, and
``latest`` is replaced atomically afterwards, so a kill at any moment leaves the
previous checkpoint loadable. A resume verifies the checksums and the trainer state's
keys, and falls back to the newest intact checkpoint (saying so) when the latest one is
damaged: flipped bytes in a stored tensor, a truncated file, a garbled ``latest``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from dmpo_core.errors import CheckpointError

CHECKPOINTS = "checkpoints"
LATEST = "latest"
CHECKSUMS = "checksums.json"
#: Keys every trainer state holds (a state missing one is damaged).
STATE_KEYS: frozenset[str] = frozenset({"step", "trainable", "ref_snapshot", "engine", "generator", "torch_rng",
                                        "counters"})
Notice = Callable[[str], None]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (a kill leaves the old
    file or the new one, never half of one); a full disk is a one-line CheckpointError."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        tmp.unlink(missing_ok=True)
        raise no_space(path.parent, len(text.encode())) from err


def batch_to_dict(batch: Any) -> dict[str, Any]:
    """Tensors and scalars of a RolloutBatch (items are dropped: they are re-derivable from the task)."""
    out = {}
    for field in attrs.fields(type(batch)):
        value = getattr(batch, field.name)
        if field.name == "items":
            continue
        out[field.name] = value.cpu() if isinstance(value, torch.Tensor) else value
    return out


def staging_folder(run_dir: Path, step: int) -> Path:
    """The temporary folder a checkpoint of ``step`` is written into before its rename (the same
    path on every rank, so that an engine's ranks can write their shards into it)."""
    return Path(run_dir) / CHECKPOINTS / f".tmp-step-{step:06d}"


def make_staging(tmp: Path) -> None:
    """Create ``tmp`` empty (a folder left by a killed save is removed first)."""
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.mkdir()
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise no_space(tmp.parent, _newest_size(tmp.parent)) from err


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    policy: Any,
    trainer_state: dict[str, Any],
    rollout: dict[str, Any] | None,
    keep: int,
    layouts: Mapping[str, str | None] | None = None,
    recipe: Mapping[str, Any] | None = None,
    notice: Notice | None = None,
    staged: bool = False,
) -> Path:
    """Write ``checkpoints/step-NNNNNN`` atomically and point ``latest`` at it; keep ``keep`` newest.

    ``layouts`` maps folder names to the ``format`` of ``policy.save`` (default: ``policy/``
    in the backend's own layout; see :func:`dmpo_core.training.recipe.checkpoint_layouts`);
    ``recipe`` is written into each of them as ``dmpo_recipe.json``. A layout the policy
    cannot be converted to is said through ``notice`` and left out, unless it is the only one.
    ``staged``: :func:`staging_folder` exists already (made by :func:`make_staging`, holding
    what the engine's ranks wrote there); it is kept and checksummed with the rest.
    """
    from dmpo_core.training.recipe import save_layouts

    layouts = dict(layouts) if layouts else {"policy": None}
    root = Path(run_dir) / CHECKPOINTS
    name = f"step-{step:06d}"
    final = root / name
    tmp = staging_folder(run_dir, step)
    if not staged:
        make_staging(tmp)
    try:
        save_layouts(policy, tmp, layouts, recipe=recipe, notice=notice, label=f"checkpoint {name}")
        torch.save(trainer_state, tmp / "trainer.pt")
        if rollout is not None:
            torch.save(rollout, tmp / "rollout.pt")
        atomic_write_text(tmp / CHECKSUMS, json.dumps(checksums(tmp), indent=1, sort_keys=True))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_text(root / LATEST, name)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        written = folder_bytes(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        raise no_space(root, max(written, _newest_size(root))) from err
    _prune(root, keep)
    return final


def folder_bytes(folder: Path) -> int:
    """Bytes of every file below ``folder`` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) if Path(folder).exists() else 0


def _step_folders(root: Path) -> list[Path]:
    """The ``step-*`` checkpoint folders below ``root``, oldest first ([] when there is no root)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")) if root.is_dir() else []


def _newest_size(root: Path) -> int:
    steps = _step_folders(root)
    return folder_bytes(steps[-1]) if steps else 0


def no_space(folder: Path, needed: int) -> CheckpointError:
    """The one-line error of a full disk: the folder, the bytes a checkpoint needs and the bytes free."""
    free = shutil.disk_usage(folder if Path(folder).exists() else Path(folder).parent).free
    return CheckpointError(str(folder), f"no space left on the device: a checkpoint needs about {needed:,} bytes, "
                           f"{free:,} are free; the previous checkpoint is intact. Free some space (or lower "
                           "keep_checkpoints) and resume with --resume")


def checksums(folder: Path) -> dict[str, str]:
    """``relative path -> SHA-256`` of every file below ``folder`` (but the checksum file itself)."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path.name != CHECKSUMS:
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            out[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return out


def damage(path: Path) -> str | None:
    """Why the checkpoint folder ``path`` cannot be resumed from, or None when it is intact.

    Checks the recorded checksums (a checkpoint written before they existed is checked by
    loading alone), then that the trainer state loads safely and holds every key.
    """
    return _inspect(path)[0]


def _inspect(path: Path) -> tuple[str | None, dict[str, Any] | None]:
    """``(why it is damaged, None)`` or ``(None, its trainer state)``."""
    path = Path(path)
    if not (path / "trainer.pt").exists():
        return "trainer.pt is missing", None
    record = path / CHECKSUMS
    if record.exists():
        try:
            expected = json.loads(record.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return f"{CHECKSUMS} is garbled", None
        if not isinstance(expected, dict):
            return f"{CHECKSUMS} is garbled", None
        actual = checksums(path)
        for name, digest in sorted(expected.items()):
            if name not in actual:
                return f"{name} is missing", None
            if actual[name] != digest:
                return f"{name} does not match its checksum (damaged or changed since it was saved)", None
    try:
        state = load_trainer_state(path)
    except CheckpointError as err:
        return err.problem, None
    missing = sorted(STATE_KEYS - set(state))
    if missing:
        return f"trainer.pt lacks {', '.join(missing)}", None
    return None, state


def _prune(root: Path, keep: int) -> None:
    steps = _step_folders(root)
    latest = _pointer(root)
    for old in steps[:-keep]:
        if old.name != latest:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _pointer(root: Path) -> str | None:
    """The checkpoint name ``latest`` holds, or None when it is absent or not a plain step name."""
    try:
        name = (root / LATEST).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if name.startswith("step-") and "/" not in name and "\\" not in name else None


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``latest`` names (else the newest ``step-*`` folder), unverified; None when there is none."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    name = _pointer(root)
    if name is not None and (root / name).is_dir():
        return root / name
    steps = _step_folders(root)
    return steps[-1] if steps else None


def resumable_checkpoint(run_dir: Path, notice: Notice | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The newest INTACT checkpoint of a run and its trainer state (None when the run has none).

    The one ``latest`` names is tried first, then the others newest first; every damaged
    one passed over is said through ``notice`` in one line.

    Raises:
        CheckpointError: checkpoints exist but none is intact.
    """
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    first = latest_checkpoint(run_dir)
    order = ([first] if first is not None else []) + [p for p in reversed(_step_folders(root)) if p != first]
    if (root / LATEST).exists() and _pointer(root) is None and notice:
        notice(f"{root / LATEST} is garbled; looking for the newest intact checkpoint instead")
    passed: list[str] = []
    for path in order:
        why, state = _inspect(path)
        if why is None and state is not None:
            if passed and notice:
                notice(f"resuming from {path.name}: {'; '.join(passed)}")
            return path, state
        passed.append(f"{path.name} is damaged ({why})")
    if passed:
        raise CheckpointError(str(root), f"no intact checkpoint to resume from: {'; '.join(passed)}; "
                              "start afresh with --overwrite")
    return None


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
    atomic_write_text(Path(run_dir) / "config.json", json.dumps(config, indent=2, sort_keys=True))


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``config.json``, or None for a folder that holds no run."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(str(path), f"is garbled ({type(err).__name__}); the run's settings cannot be "
                              "read: start afresh with --overwrite") from err
    if not isinstance(data, dict):
        raise CheckpointError(str(path), "is not a run config (a JSON object); start afresh with --overwrite")
    return data
