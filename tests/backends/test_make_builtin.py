"""The documented command that builds the built-in model runs end to end (a few steps here)."""

from __future__ import annotations

import json

import pytest
from make_builtin_tool import make_builtin


@pytest.mark.parametrize("positions", ["rope", "absolute"])
def test_build_writes_a_loadable_original_layout_model_with_its_recipe(tmp_path, positions):
    out = tmp_path / "model"
    record = make_builtin.build(out, seed=0, blank_weight=0.02, target=2.0, max_steps=2, lr=1e-3, batch_size=4,
                                eval_every=1, eval_size=8, rope_theta=100.0, positions=positions)
    assert record["steps"] == 2 and len(record["history"]) == 2  # target 2.0 is never reached
    config = json.loads((out / "config.json").read_text())
    assert config["rope_theta"] == 100.0 and config["d_model"] == 128  # original LLaDA keys
    assert config["rope"] is (positions == "rope")
    assert config["max_sequence_length"] == (256 if positions == "absolute" else 4096)
    build = json.loads((out / "BUILD.json").read_text())
    assert build["rope_theta"] == 100.0 and build["positions"] == positions
    assert (out / "dmpo_train.yaml").exists()
    from dmpo.backends.llada import load_llada_policy

    policy = load_llada_policy(str(out), reference=False)
    assert policy.mask_id == config["mask_token_id"]


def test_the_build_script_runs_as_documented():
    import subprocess
    import sys

    from make_builtin_tool import PATH

    out = subprocess.run([sys.executable, str(PATH), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "builtin:sudoku-tiny" in out.stdout and "--positions" in out.stdout
