"""DiFFPO trains through the command line: 3 steps on the built-in model with its sampler."""

from __future__ import annotations

import json

from tests.cli.test_cli import SHORT, run

DIFFPO = ["--set", "rollout.sampler=diffpo-eb", "--set", "eval_sampler_options=null",
          "--set", "weighting.scheme=grpo", "--set", "loss.objective=diffpo"]


def test_diffpo_trains_three_steps_on_the_builtin_model(tmp_path):
    out = tmp_path / "diffpo"
    result = run("train", "--output-dir", str(out), "--quiet", *SHORT, "--set", "total_steps=3", *DIFFPO)
    assert result.exit_code == 0, result.output
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if not r.get("eval")]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert {"is_weight_mean", "is_clip_fraction", "loss_action", "row_nfe_mean", "ratio_mean"} <= set(steps[-1])
    evals = [r for r in records if r.get("eval")]
    assert evals and all("eval_mean_nfe" in r for r in evals)


def test_diffpo_refuses_a_sampler_without_a_trajectory_before_loading(tmp_path):
    result = run("train", "--output-dir", str(tmp_path / "x"), "--quiet", *SHORT, "--set", "weighting.scheme=grpo",
                 "--set", "loss.objective=diffpo")
    assert result.exit_code != 0
    assert "reads the sampler's trajectory" in result.output and "diffpo-eb" in result.output
