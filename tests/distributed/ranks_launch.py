"""Launching a script on several CPU ranks (torchrun, gloo), bounded by a timeout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rank_env() -> dict[str, str]:
    """One thread per rank (two ranks share a 2-core machine), the CPU accelerator for DeepSpeed."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu",
            "TOKENIZERS_PARALLELISM": "false"}


def torchrun(nproc: int, *args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc-per-node nproc ARGS`` on a free port; raises on timeout."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-port", str(free_port()), *args]
    return subprocess.run(cmd, env=rank_env(), capture_output=True, text=True, timeout=timeout, cwd=cwd)


def python(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The same script in one process without a launcher."""
    return subprocess.run([sys.executable, *args], env=rank_env(), capture_output=True, text=True, timeout=timeout)


def rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the worker of ``rank`` among the launcher's children (read from /proc)."""
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
