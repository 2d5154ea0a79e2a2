"""Signals lose nothing and a run folder has one writer (reliability items 2 and 3).

Real processes: ``dmpo train`` on the built-in model, stopped with SIGTERM or Ctrl-C
(SIGINT), killed with SIGKILL, and raced by a second run on the same folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dmpo.cli import main as cli_main
from dmpo_core.training import checkpoint as ckpt

cli_main._add_builtin_commands()
CLI = cli_main.cli

ARGS = ["--quiet", "--set", "eval_size=0", "--set", "save_every=0", "--set", "rollout.prompts_per_step=2",
        "--set", "rollout.group_size=2", "--set", "max_minutes=null"]


def start(out: Path, steps: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "dmpo.cli.main", "train", "--output-dir", str(out), *ARGS,
                             "--set", f"total_steps={steps}", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def steps_logged(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip().endswith("}")]
    return [r["step"] for r in rows if not r.get("eval") and "stopped" not in r]


def wait_for_steps(proc: subprocess.Popen, out: Path, n: int, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while len(steps_logged(out)) < n:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("the run made no progress")
        time.sleep(0.05)


def weights(out: Path) -> dict[str, torch.Tensor]:
    state = ckpt.load_trainer_state(ckpt.latest_checkpoint(out))
    return {str(i): t for i, t in enumerate(state["trainable"])}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    proc = start(out, 8)
    assert proc.wait(timeout=300) == 0, proc.communicate()
    return weights(out)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_finishes_the_step_checkpoints_says_how_to_resume_and_loses_nothing(tmp_path, uninterrupted,
                                                                                     sig, code):
    out = tmp_path / "run"
    proc = start(out, 8)
    wait_for_steps(proc, out, 2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    said = [ln for ln in err.splitlines() if "stopped at step" in ln]
    assert len(said) == 1 and f"by {signal.Signals(sig).name}" in said[0] and "--resume" in said[0]
    assert "Traceback" not in err and "Aborted" not in err
    done = steps_logged(out)
    assert ckpt.latest_checkpoint(out).name == f"step-{done[-1]:06d}"  # the step it finished is saved
    resumed = start(out, 8, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    assert steps_logged(out) == list(range(1, 9))  # every step once
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted.values(), weights(out).values()))


def test_a_second_signal_exits_at_once(tmp_path):
    out = tmp_path / "run"
    proc = start(out, 200)
    wait_for_steps(proc, out, 1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0


def test_a_second_run_on_a_live_folder_is_refused_and_a_dead_runs_lock_is_not(tmp_path):
    out = tmp_path / "run"
    proc = start(out, 500)
    wait_for_steps(proc, out, 1)
    try:
        for flags in ([], ["--resume"], ["--overwrite"]):
            result = CliRunner().invoke(CLI, ["train", "--output-dir", str(out), *ARGS, "--set", "total_steps=500",
                                              *flags])
            assert result.exit_code == 2, result.output
            assert f"is in use by process {proc.pid}" in result.output, result.output
        assert (out / "metrics.jsonl").exists()  # --overwrite deleted nothing of the live run
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    # the kernel released the dead process's lock: a resume goes ahead
    result = CliRunner().invoke(CLI, ["train", "--output-dir", str(out), *ARGS, "--set", "total_steps=500",
                                      "--set", "total_steps=2", "--overwrite"])
    assert result.exit_code == 0, result.output
