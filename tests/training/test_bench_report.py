"""``bench/learning.py --report`` merges results files (runs split over processes) into one table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_report_merges_seeds_from_several_files(tmp_path):
    times = dict.fromkeys(("rollout", "reward", "logp", "weights", "loss_fwd_bwd", "optimizer", "other"), 0.1)
    times["total"] = 0.7

    def run(seed: int, final: float) -> dict:
        return {"variant": "dmpo-g8", "seed": seed, "steps": 150, "base": 0.30, "final": final, "last": final,
                "wall_s": 1.0, "times": times}

    (tmp_path / "a.json").write_text(json.dumps([run(0, 0.40)]))
    (tmp_path / "b.json").write_text(json.dumps([run(1, 0.50)]))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "learning.py"), "--report",
                          str(tmp_path / "a.json"), str(tmp_path / "b.json")],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    row = next(line for line in out.splitlines() if line.startswith("dmpo-g8"))
    assert row.split()[1] == "2"  # two runs merged
    assert "45.0 ±  7.1" in row and "15.0 ±  7.1" in row  # mean and sample stdev of final and change
    assert "seeds [0, 1]" in out


def test_every_variant_trains_exactly_the_given_steps_without_the_recipes_time_budget():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_learning", ROOT / "bench" / "learning.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for variant in bench.VARIANTS:
        cfg = bench.variant_config(variant, seed=3, steps=120)
        assert (cfg.total_steps, cfg.seed, cfg.max_minutes, cfg.save_every) == (120, 3, None, 0)
    assert bench.variant_config("negative-g4", 0, 120).rollout.group_size == 4
