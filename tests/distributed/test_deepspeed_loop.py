"""``dmpo train --engine deepspeed`` on 2 CPU ranks: the numbers of one process, a threshold
sampler with different step counts per rank, LoRA with its peft adapter, and a SIGKILLed rank
followed by ``--resume``."""

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

from dmpo_core.training import checkpoint as ckpt
from tests.distributed.conftest import check_ok, launch
from tests.distributed.ranks_launch import free_port, python, rank_env, rank_pid

BASE = ["train", "--backend", "llada", "--task", "sudoku", "--model", "builtin:sudoku-tiny", "--set", "eval_size=0",
        "--set", "rollout.prompts_per_step=4", "--quiet"]
DMPO = [sys.executable, "-c", "from dmpo.cli.main import main; main()"]
ZERO3 = ["--engine", "deepspeed", "--set", "engine_options.persistence_threshold=0"]  # every tensor partitioned


def dmpo_ranks(out: Path, *args: str) -> None:
    check_ok(launch(["--no-python", *DMPO, *BASE, *args, "--output-dir", str(out)], timeout=240))


def dmpo_one(out: Path, *args: str) -> None:
    done = python("-c", "from dmpo.cli.main import main; main()", *BASE, *args, "--set", "engine_options.rng=keyed",
                  "--output-dir", str(out))
    assert done.returncode == 0, done.stderr[-3000:]


def records(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "reward_mean" in r]


def final(run: Path, step: int) -> dict:
    return torch.load(run / "checkpoints" / f"step-{step:06d}" / "trainer.pt", weights_only=False)


def test_zero3_and_zero2_on_two_ranks_give_the_weights_and_rewards_of_one_process(tmp_path):
    steps = ["--set", "total_steps=3", "--set", "save_every=3"]
    dmpo_one(tmp_path / "one", *steps)
    dmpo_ranks(tmp_path / "zero3", *steps, *ZERO3)
    dmpo_ranks(tmp_path / "zero2", *steps, "--engine", "deepspeed", "--set", "engine_options.zero_stage=2")
    one = final(tmp_path / "one", 3)
    for name in ("zero3", "zero2"):
        run = tmp_path / name
        for p, q in zip(one["trainable"], final(run, 3)["trainable"], strict=True):
            torch.testing.assert_close(q, p, rtol=0, atol=1e-5, msg=name)
        for a, b in zip(records(tmp_path / "one"), records(run), strict=True):
            assert (a["reward_mean"], a["reward_std"], a["nfe"]) == (b["reward_mean"], b["reward_std"], b["nfe"]), name
            assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4), name
        # the consolidated policy of the checkpoint holds the trained weights, whole
        from dmpo_core.training.build import load_policy

        policy = load_policy("llada", str(run / "checkpoints" / "step-000003" / "policy"), {})
        for p, q in zip(policy.trainable_parameters(), final(run, 3)["trainable"], strict=True):
            assert torch.equal(p.detach(), q), name
        assert (run / "checkpoints" / "step-000003" / "engine" / "state").is_dir()


def test_lora_under_zero3_with_a_threshold_sampler_whose_step_counts_differ_per_rank(tmp_path):
    run = tmp_path / "lora"
    dmpo_ranks(run, *ZERO3, "--set", "total_steps=3", "--set", "save_every=3",
               "--set", "backend_options={lora: all, lora_r: 4, lora_alpha: 8, lora_dropout: 0.0}",
               "--set", "rollout.sampler=fast-dllm", "--set", "rollout.sampler_options.threshold=0.3",
               "--set", "eval_sampler=low-confidence",
               "--set", "ref_sync_every=2")
    rows = records(run)
    assert len(rows) == 3 and all(r["finite"] for r in rows)
    assert any(len(set(r["nfe_per_rank"])) > 1 for r in rows), [r["nfe_per_rank"] for r in rows]  # no hang though
    adapter = run / "checkpoints" / "step-000003" / "adapter"
    assert (adapter / "adapter_config.json").is_file()

    from dmpo_core.training.build import load_policy

    trained = final(run, 3)["trainable"]
    policy = load_policy("llada", "builtin:sudoku-tiny", {"adapter": str(adapter)})  # through peft
    for p, q in zip(policy.trainable_parameters(), trained, strict=True):
        assert torch.equal(p.detach(), q)
    assert any(q.abs().max() > 0 for q in trained[1::2])  # lora_B starts at zero: it trained


def _launch(out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           "--no-python", *DMPO, *BASE, *ZERO3, "--set", "total_steps=6", "--set", "save_every=1",
           "--set", "keep_checkpoints=10", "--output-dir", str(out), *extra]
    return subprocess.Popen(cmd, env=rank_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_a_killed_rank_leaves_a_loadable_checkpoint_and_resume_on_two_ranks_reaches_the_same_weights(tmp_path):
    run = tmp_path / "killed"
    proc = _launch(run)
    deadline, victim = time.monotonic() + 240, None
    while time.monotonic() < deadline and proc.poll() is None:
        latest = run / "checkpoints" / "latest"
        if latest.exists() and latest.read_text().strip() >= "step-000002":
            victim = rank_pid(proc.pid, 1)
            if victim:
                os.kill(victim, signal.SIGKILL)
                break
        time.sleep(0.02)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert victim is not None, f"rank 1 was not found running after the second checkpoint:\n{out[-3000:]}"
    assert proc.returncode != 0, "the launch survived the loss of a rank"
    found = ckpt.resumable_checkpoint(run)
    assert found is not None and found[1]["step"] < 6, "no loadable checkpoint before the end"
    assert (found[0] / "engine" / "state").is_dir()

    resumed = _launch(run, "--resume")
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out[-3000:]

    straight = tmp_path / "straight"
    dmpo_one(straight, "--set", "total_steps=6", "--set", "save_every=6")
    for p, q in zip(final(straight, 6)["trainable"], final(run, 6)["trainable"], strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-5)
