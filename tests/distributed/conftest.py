"""Helpers of the distributed tests: launch a script on several CPU ranks (gloo,
``DS_ACCELERATOR=cpu``) under ``torch.distributed.run``, bounded by a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed.ranks_launch import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def launch(args: list[str], *, ranks: int = 2, timeout: float = 240.0, cwd: Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m torch.distributed.run --nproc-per-node RANKS ARGS``; a hang is a failed test
    after ``timeout`` seconds (every rank is killed with the launcher)."""
    full_env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
                **(env or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks),
           "--master-port", str(free_port()), *args]
    try:
        return subprocess.run(cmd, cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
                              start_new_session=True)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{' '.join(args[:3])} on {ranks} ranks did not finish in {timeout:.0f} s (a hang?):\n"
                    f"{(err.stderr or b'')[-3000:]!r}")


def rank_reports(out: Path, ranks: int) -> list[dict]:
    """The JSON report each rank of :func:`launch` wrote to ``OUT.RANK``."""
    return [json.loads(Path(f"{out}.{r}").read_text()) for r in range(ranks)]


def check_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]


@pytest.fixture(autouse=True)
def _needs_deepspeed():
    pytest.importorskip("deepspeed", reason="the distributed tests need deepspeed: pip install 'dllm-dmpo[deepspeed]'")
