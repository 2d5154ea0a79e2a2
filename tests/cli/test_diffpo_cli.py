"""DiFFPO trains through the command line: 3 steps on each built-in model with its sampler."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_cli import BUILTIN_MODELS, SHORT, run, train_three_steps

DIFFPO = ["--set", "rollout.sampler=diffpo-eb", "--set", "eval_sampler_options=null",
          "--set", "weighting.scheme=grpo", "--set", "loss.objective=diffpo"]


@pytest.mark.parametrize("model", BUILTIN_MODELS)
def test_diffpo_trains_three_steps_on_the_builtin_model(tmp_path, model):
    out = tmp_path / "diffpo"
    steps = train_three_steps(out, model, *DIFFPO)
    assert {"is_weight_mean", "is_clip_fraction", "loss_action", "row_nfe_mean", "ratio_mean"} <= set(steps[-1])
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r.get("eval")]
    assert evals and all("eval_mean_nfe" in r for r in evals)


def test_diffpo_refuses_a_sampler_without_a_trajectory_before_loading(tmp_path):
    result = run("train", "--output-dir", str(tmp_path / "x"), "--quiet", *SHORT, "--set", "weighting.scheme=grpo",
                 "--set", "loss.objective=diffpo")
    assert result.exit_code != 0
    assert "reads the sampler's trajectory" in result.output and "diffpo-eb" in result.output
