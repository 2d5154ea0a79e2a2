"""A 2-rank run (``ddp`` engine) whose rank 1 is killed with SIGKILL mid-run keeps a loadable
checkpoint, and ``--resume`` on 2 ranks reaches the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from dmpo_core.training import checkpoint as ckpt
from tests.distributed.ranks_launch import free_port, python, rank_env

ARGS = ["train", "--backend", "llada", "--task", "sudoku", "--model", "builtin:sudoku-tiny",
        "--set", "total_steps=8", "--set", "save_every=1", "--set", "eval_size=0", "--set", "keep_checkpoints=10",
        "--set", "rollout.prompts_per_step=4", "--quiet"]
DMPO = [sys.executable, "-c", "from dmpo.cli.main import main; main()"]


def _launch(out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           "--no-python", *DMPO, *ARGS, "--engine", "ddp", "--output-dir", str(out), *extra]
    return subprocess.Popen(cmd, env=rank_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the worker of ``rank`` among the launcher's descendants (read from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().split()
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[3]) == launcher and f"RANK={rank}".encode() in env:
            return int(entry.name)
    return None


def _final_weights(run: Path) -> list[torch.Tensor]:
    return torch.load(run / "checkpoints" / "step-000008" / "trainer.pt", weights_only=False)["trainable"]


def test_a_killed_rank_leaves_a_loadable_checkpoint_and_resume_reaches_the_same_weights(tmp_path):
    run = tmp_path / "killed"
    proc = _launch(run)
    deadline, victim = time.monotonic() + 240, None
    while time.monotonic() < deadline and proc.poll() is None:
        latest = run / "checkpoints" / "latest"
        if latest.exists() and latest.read_text().strip() >= "step-000002":
            victim = _rank_pid(proc.pid, 1)
            if victim:
                os.kill(victim, signal.SIGKILL)
                break
        time.sleep(0.02)
    out, _ = proc.communicate(timeout=120)
    assert victim is not None, f"rank 1 was not found running after the second checkpoint:\n{out[-3000:]}"
    assert proc.returncode != 0, "the launch survived the loss of a rank"
    found = ckpt.resumable_checkpoint(run)
    assert found is not None and found[1]["step"] < 8, "no loadable checkpoint before the end"
    kept = found[0] / "trainer.pt"
    written = kept.stat().st_mtime_ns

    resumed = _launch(run, "--resume")
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out[-3000:]
    assert kept.stat().st_mtime_ns == written, "--resume started afresh instead of from the last checkpoint"

    straight = tmp_path / "straight"  # one process with keyed randomness: the numbers of any world size
    done = python("-c", "from dmpo.cli.main import main; main()", *ARGS, "--set", "engine_options.rng=keyed",
                  "--output-dir", str(straight))
    assert done.returncode == 0, done.stderr[-3000:]
    for p, q in zip(_final_weights(straight), _final_weights(run), strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-5)
