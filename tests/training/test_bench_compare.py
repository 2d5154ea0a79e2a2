"""``bench/compare.py``: every method at the run's scale and 64 rollouts a step; ``--report`` merges results files
(a finished ``results.json`` and the ``results.jsonl`` of a stopped run) into one table with a steps column,
and the accuracy-vs-NFE table of the sweeps and the methods' own samplers."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_compare", ROOT / "bench" / "compare.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def _run(method: str, seed: int, steps: int, accs: list[float], step_s: float = 1.0) -> dict:
    every = steps // (len(accs) - 1)
    evals = [{"step": i * every, "rollouts": 64 * i * every, "seconds": step_s * i * every, "accuracy": a,
              "mean_nfe": 8.0} for i, a in enumerate(accs)]
    return {"task": "sudoku", "method": method, "seed": seed, "steps": steps, "evals": evals, "wall_s": 1.0,
            "train_s": step_s * steps, "sweeps": [{"task": "sudoku", "model": method, "seed": seed, "sampler": "eb",
                                                   "gamma": 0.1, "accuracy": accs[-1], "mean_nfe": 5.0}]}


def test_every_method_trains_the_given_steps_at_64_rollouts_a_step_without_the_recipes_time_budget():
    bench = _bench()
    for task in bench.TASKS:
        for method in bench.METHODS:
            cfg = bench.method_config(task, method, seed=3, steps=120, eval_every=20, eval_size=32)
            assert (cfg.total_steps, cfg.seed, cfg.max_minutes, cfg.save_every) == (120, 3, None, 0)
            assert cfg.rollout.prompts_per_step * cfg.rollout.group_size == 64, (task, method)
            assert (cfg.eval_every, cfg.eval_size) == (20, 32)


def test_report_merges_results_files_and_compares_at_the_shortest_runs_length(tmp_path):
    # a finished run of two methods (results.json) and, from a stopped run, one more seed of dmpo (results.jsonl)
    # plus a shorter method: equal rollouts is then read at step 4, the shorter run's length
    (tmp_path / "results.json").write_text(json.dumps([
        _run("dmpo", 0, 8, [0.30, 0.40, 0.50, 0.60, 0.70]),
        _run("diffu-grpo", 0, 8, [0.30, 0.35, 0.40, 0.45, 0.50], step_s=0.5)]))
    (tmp_path / "more.jsonl").write_text("\n".join(json.dumps(r) for r in (
        _run("dmpo", 1, 8, [0.30, 0.50, 0.60, 0.70, 0.80]),
        _run("dmpo-paper", 0, 4, [0.30, 0.20, 0.10], step_s=10.0))) + "\n")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), "--report",
                          str(tmp_path / "results.json"), str(tmp_path / "more.jsonl"), "--out", str(tmp_path / "rep")],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.split("accuracy % / mean NFE")[0].splitlines()
            if line.startswith("| ") and not line.startswith("| method")}
    assert "step 4 x 64 rollouts" in out  # the shortest run's length
    assert "T = 4 s" in out  # diffu-grpo's 8 steps x 0.5 s, the shortest mean training time
    # method order is METHODS', whatever order the files give; steps and seed count per method
    assert list(rows) == ["dmpo", "dmpo-paper", "diffu-grpo"]
    assert rows["dmpo"][:2] == ["8", "2"] and rows["dmpo-paper"][:2] == ["4", "1"]
    # final = mean of the last two evaluations at or before step 4: dmpo seeds (0.4+0.5)/2 and (0.5+0.6)/2
    assert rows["dmpo"][3] == "50.0 ± 7.1" and rows["dmpo"][4] == "45.0 / 55.0"
    assert rows["dmpo-paper"][3] == "15.0"
    # at T = 4 s: dmpo (1 s a step) is read at step 4, dmpo-paper (10 s a step) only at step 0
    assert rows["dmpo"][6] == "50.0 / 60.0" and rows["dmpo-paper"][6] == "30.0"
    assert rows["dmpo-paper"][7] == "10.00"  # s/step
    # the sampler frontier: the sweep's mean over seeds, and each method's own evaluation sampler at its last step
    assert "| dmpo | 75.0 / 5.0 * | 30.0 / 8.0 | 75.0 / 8.0 |" in out  # eb 0.1 on seeds 0 and 1 beats every other point
    for name in ("table.md", "sweeps.jsonl", "sudoku-rollouts.png", "sudoku-seconds.png", "sudoku-nfe.png"):
        assert (tmp_path / "rep" / name).is_file(), name
    assert len((tmp_path / "rep" / "sweeps.jsonl").read_text().splitlines()) == 4
    # --seeds keeps only those seeds' runs
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), "--report", str(tmp_path / "results.json"),
                          str(tmp_path / "more.jsonl"), "--seeds", "1", "--out", str(tmp_path / "rep1")],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert "| dmpo | 8 | 1 | 30.0 | 75.0 |" in out and "diffu-grpo" not in out.split("accuracy % / mean NFE")[0]


def test_a_run_given_twice_keeps_its_last_copy():
    bench = _bench()
    runs = bench.ordered([_run("diffpo", 0, 8, [0.3, 0.3, 0.3]), _run("dmpo", 0, 8, [0.3, 0.4, 0.5]),
                          _run("diffpo", 0, 8, [0.3, 0.6, 0.7])])
    assert [r["method"] for r in runs] == ["dmpo", "diffpo"] and runs[1]["evals"][-1]["accuracy"] == 0.7


def test_signals_average_the_training_records_over_seeds_and_windows(tmp_path):
    bench = _bench()
    for seed, grad in ((0, 1.0), (1, 3.0)):
        run = tmp_path / f"countdown-diffu-grpo-s{seed}"
        run.mkdir()
        records = [{"step": 0, "eval": True, "eval_accuracy": 0.2}] + [
            {"step": s, "reward_mean": 0.1 * s, "grad_norm": grad, "groups_without_signal": 4.0} for s in (1, 2, 3)]
        (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    rows = bench.signals(tmp_path, window=2).splitlines()
    # steps 1-2 of both seeds: reward (0.1 + 0.2) / 2, gradient norm (1 + 3) / 2; a method's unlogged signals are "-"
    assert rows[2] == "| countdown | diffu-grpo | 2 | 1-2 | 0.150 | 2.000 | - | - | - | 4.000 | - |"
    assert rows[3].startswith("| countdown | diffu-grpo | 2 | 3-3 | 0.300 |")
    assert bench.signals(tmp_path, window=2, seeds=[1]).splitlines()[2].startswith("| countdown | diffu-grpo | 1 | 1-2 | 0.150 | 3.000 |")


def _tried(method: str, lr, seed: int, reward: float, accs: list[float]) -> dict:
    return {**_run(method, seed, 8, accs), "lr": lr, "reward_last50": reward}


def test_a_learning_rate_is_set_last_and_a_run_at_another_rate_is_its_own_method():
    bench = _bench()
    assert bench.method_config("countdown", "dmpo", 0, 10, 5, 16, lr=5e-5).optim.lr == 5e-5
    assert bench.method_config("countdown", "dmpo-paper", 0, 10, 5, 16, lr=5e-5).optim.lr == 5e-5  # over the preset
    assert bench.recipe_lr("countdown", "diffu-grpo") == bench.method_config("countdown", "dmpo", 0, 1, 1, 1).optim.lr
    runs = bench.ordered([_tried("dmpo", 1e-4, 0, 0.2, [0.3, 0.4, 0.5]), _tried("dmpo", None, 0, 0.1, [0.3, 0.2, 0.1]),
                          _tried("dmpo", 5e-5, 0, 0.1, [0.3, 0.3, 0.3])])
    assert [r["name"] for r in runs] == ["dmpo", "dmpo@5e-05", "dmpo@0.0001"]  # the recipe's rate first, then by rate
    table = bench.table(runs)
    assert "| dmpo@0.0001 | 8 | 1 | 30.0 | 45.0 |" in table and "| dmpo | 8 | 1 | 30.0 | 15.0 |" in table


def test_tuning_picks_each_methods_rate_by_its_rollout_reward_never_by_held_out_accuracy():
    bench = _bench()
    runs = [_tried("dmpo", None, s, 0.10, [0.3, 0.6, 0.6]) for s in (0, 1)]  # best held-out, lower reward
    runs += [_tried("dmpo", 1e-4, 0, 0.30, [0.3, 0.2, 0.2]), _tried("dmpo", 1e-4, 1, 0.0, [0.3, 0.2, 0.2])]
    runs += [_tried("diffu-grpo", None, 0, 0.2, [0.3, 0.3, 0.3]), _tried("diffu-grpo", 4e-4, 0, 0.25, [0.3, 0.3, 0.3])]
    text = bench.tuning(runs)
    rows = {tuple(c.strip() for c in line.split("|")[2:4]): [c.strip() for c in line.split("|")[4:-1]]
            for line in text.splitlines() if line.startswith("| sudoku")}
    assert rows[("dmpo", "recipe")] == ["0/1", "0.100", "60.0 ± 0.0", ""]
    assert rows[("dmpo", "0.0001")] == ["0/1", "0.150", "20.0 ± 0.0", "yes"]  # mean over seeds (0.3 + 0.0) / 2
    assert rows[("diffu-grpo", "0.0004")][-1] == "yes"
    assert text.splitlines()[-1] == "picks: sudoku:dmpo=0.0001 sudoku:diffu-grpo=0.0004"
    assert bench.parse_lr(["countdown:dmpo=1e-4", "sudoku:diffpo=recipe"]) == {("countdown", "dmpo"): 1e-4,
                                                                                ("sudoku", "diffpo"): None}
    with pytest.raises(SystemExit, match="TASK:METHOD=LR"):
        bench.parse_lr(["countdown:dmpo-typo=1e-4"])


def test_report_with_rates_keeps_each_method_at_its_given_rate_only(tmp_path):
    runs = [_tried("dmpo", None, 0, 0.1, [0.3, 0.1, 0.1]), _tried("dmpo", 1e-4, 0, 0.2, [0.3, 0.5, 0.5]),
            _tried("diffu-grpo", None, 0, 0.2, [0.3, 0.4, 0.4]), _tried("diffu-grpo", 4e-4, 0, 0.1, [0.3, 0.2, 0.2])]
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in runs) + "\n")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), "--report", str(tmp_path / "results.jsonl"),
                          "--lr", "sudoku:dmpo=1e-4", "--out", str(tmp_path / "rep")],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    methods = [line.split("|")[1].strip() for line in out.split("accuracy % / mean NFE")[0].splitlines()
               if line.startswith("| ") and not line.startswith("| method")]
    assert methods == ["dmpo@0.0001", "diffu-grpo"]  # diffu-grpo unnamed: at the recipe's rate
