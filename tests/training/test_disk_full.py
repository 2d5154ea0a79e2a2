"""A full disk ends a run in one line naming the folder and the bytes needed, and loses nothing
(reliability item 6): on a real small tmpfs where one can be mounted, and by injection."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import uuid

import pytest

from dmpo_core.errors import CheckpointError
from dmpo_core.training import TrainConfig, train
from dmpo_core.training import checkpoint as ckpt
from tests.training.test_loop import SMALL, make_components

CFG = TrainConfig.from_dict({**SMALL, "total_steps": 2, "save_every": 1, "eval_size": 0})
MORE = TrainConfig.from_dict({**SMALL, "total_steps": 4, "save_every": 1, "eval_size": 0})


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or 'not permitted'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(folder) -> None:
    """Write a filler file until the device is full."""
    with open(folder / "filler", "wb", buffering=0) as fh:  # unbuffered: closing has nothing left to flush
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            assert err.errno == errno.ENOSPC


def test_a_full_tmpfs_is_one_line_and_the_last_checkpoint_survives(small_tmpfs):
    run = small_tmpfs / "run"
    train(CFG, make_components(CFG), run)
    before = ckpt.latest_checkpoint(run)
    fill(small_tmpfs)
    with pytest.raises(CheckpointError, match="no space left on the device") as err:
        train(MORE, make_components(MORE), run, resume=True)
    text = str(err.value)
    assert "\n" not in text and str(run) in text and "bytes" in text
    os.remove(small_tmpfs / "filler")
    assert ckpt.damage(before) is None  # the previous checkpoint is intact
    train(MORE, make_components(MORE), run, resume=True)  # and the run finishes once there is room
    assert ckpt.latest_checkpoint(run).name == "step-000004"


def test_enospc_during_a_checkpoint_write_names_the_bytes_and_cleans_up(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(CFG, make_components(CFG), run)
    before = ckpt.latest_checkpoint(run)
    real_save = ckpt.torch.save

    def full(obj, path, *a, **k):
        if str(path).endswith("trainer.pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(ckpt.torch, "save", full)
    with pytest.raises(CheckpointError, match=r"a checkpoint needs about [\d,]+ bytes, [\d,]+ are free"):
        train(MORE, make_components(MORE), run, resume=True)
    assert not list((run / ckpt.CHECKPOINTS).glob(".tmp-*"))  # no half-written folder left
    assert ckpt.latest_checkpoint(run) == before and ckpt.damage(before) is None
    assert shutil.disk_usage(run).free > 0
