"""Kill-and-resume trials: ``dmpo train`` is killed with SIGKILL at random moments, resumed
until it finishes, and compared with an uninterrupted run.

Each trial starts a run of the built-in model, kills it after a random delay (anywhere in
start-up, a step, an evaluation or a checkpoint write), resumes it with ``--resume`` (killing
the resumed process too, with probability ``--rekill``) until it completes, then checks that

* the final trainable weights equal the uninterrupted run's bit for bit, and
* ``metrics.jsonl`` holds every step exactly once and every evaluation exactly once.

Usage::

    python bench/faults.py --trials 10 [--steps 6] [--seed 0]

It prints one line per trial and ends with ``N of N bit-identical, metrics clean``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dmpo_core.training import checkpoint as ckpt

BASE = ["--quiet", "--set", "eval_size=8", "--set", "eval_batch_size=8", "--set", "eval_every=2",
        "--set", "save_every=2", "--set", "rollout.prompts_per_step=2", "--set", "rollout.group_size=4",
        "--set", "max_minutes=null"]


def command(out: Path, steps: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dmpo.cli.main", "train", "--output-dir", str(out), *BASE,
            "--set", f"total_steps={steps}", *extra]


def run_to_end(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"run failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def run_and_kill(cmd: list[str], delay: float) -> bool:
    """Start ``cmd``, SIGKILL it after ``delay`` seconds; True when it was killed, False when it ended first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True
    if proc.returncode != 0:
        raise RuntimeError(f"run failed ({proc.returncode}): {proc.stderr.read().strip()[-500:]}")
    return False


def final_weights(out: Path) -> list[torch.Tensor]:
    return ckpt.load_trainer_state(ckpt.latest_checkpoint(out))["trainable"]


def metrics_problems(out: Path, steps: int) -> list[str]:
    """What is wrong with the run's metrics file: missing, repeated or torn records."""
    problems = []
    lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            problems.append(f"torn line {line[:40]!r}")
    step_rows = [r["step"] for r in rows if not r.get("eval") and "stopped" not in r]
    eval_rows = [r["step"] for r in rows if r.get("eval")]
    if step_rows != list(range(1, steps + 1)):
        problems.append(f"step records {step_rows}")
    if eval_rows != sorted(set(eval_rows)) or eval_rows[:1] != [0] or eval_rows[-1:] != [steps]:
        problems.append(f"evaluation records {eval_rows}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rekill", type=float, default=0.3, help="chance to kill each resumed process too")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        run_to_end(command(root / "reference", args.steps))
        span = time.perf_counter() - t0  # how long a whole run takes: kills land anywhere in it
        reference = final_weights(root / "reference")
        good = 0
        for trial in range(args.trials):
            out = root / f"trial-{trial}"
            kills, delay = 0, rng.uniform(0.0, span)
            kills += run_and_kill(command(out, args.steps), delay)
            while True:
                resume = command(out, args.steps, "--resume") if (out / "config.json").exists() else \
                    command(out, args.steps, "--overwrite")
                if rng.random() < args.rekill and run_and_kill(resume, rng.uniform(0.0, span)):
                    kills += 1
                    continue
                run_to_end(resume)
                break
            same = all(torch.equal(a, b) for a, b in zip(reference, final_weights(out)))
            problems = metrics_problems(out, args.steps)
            good += same and not problems
            print(f"trial {trial}: first kill at {delay:.2f} s of {span:.2f} s, {kills} kill(s); "
                  f"{'bit-identical' if same else 'WEIGHTS DIFFER'}, "
                  f"{'metrics clean' if not problems else 'metrics: ' + '; '.join(problems)}", flush=True)
    print(f"{good} of {args.trials} bit-identical, metrics clean")
    return 0 if good == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
