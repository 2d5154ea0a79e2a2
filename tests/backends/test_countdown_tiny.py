"""The documented build command of ``builtin:countdown-tiny`` runs end to end (a few steps here)
and writes a loadable model with its recipe. (The model itself is not shipped yet: see
docs/baselines.md.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from dmpo.tasks.countdown import countdown

TOOL = Path(__file__).resolve().parents[2] / "tools" / "make_countdown_tiny.py"


def _tool():
    name = "dmpo_tools_make_countdown_tiny"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TOOL)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


tool = _tool()


def test_the_build_runs_end_to_end_for_a_few_steps(tmp_path):
    record = tool.build(tmp_path / "m", seed=0, target=2.0, max_steps=2, lr=1e-3, batch_size=4, eval_every=1,
                        eval_size=8)
    assert record["steps"] == 2 and len(record["history"]) == 2
    assert (tmp_path / "m" / "dmpo_train.yaml").exists()
    from dmpo.backends.llada import load_llada_policy

    policy = load_llada_policy(str(tmp_path / "m"), reference=False)
    task = countdown(**tool.TASK_OPTIONS, seed=0)
    item = task.train_items()[0]
    ids = tool.target_ids(policy.tokenizer, item["solution"], policy.eos_id)
    assert len(ids) == tool.GEN_LENGTH and ids[-1] == policy.eos_id  # the longest solution still ends in EOS
    with pytest.raises(SystemExit):
        tool.main(["--help"])
