"""``builtin:countdown-tiny``: the shipped base is the weak, RL-able base its BUILD.json records,
and the documented build command runs end to end (a few steps here).

The base is re-measured from the shipped files with the decoding BUILD.json records (greedy
low-confidence, one token per step, the 256 generated test problems), so a rebuilt or swapped
model that leaves the weak-base window or no longer matches its record fails CI.
"""

from __future__ import annotations

import json

import pytest
from dmpo.backends import builtin
from dmpo.backends.llada import load_llada_policy
from dmpo.tasks.countdown import countdown
from make_builtin_tool import make_countdown_tiny as tool

from dmpo_core.samplers import LowConfidenceSampler
from dmpo_core.training.evaluate import evaluate
from dmpo_core.training.rollout import decode_completions

FOLDER = builtin.ROOT / tool.NAME


@pytest.fixture(scope="module")
def record():
    return json.loads((FOLDER / "BUILD.json").read_text())


def test_shipped_base_is_weak_uses_the_numbers_and_matches_its_build_record(record):
    policy = load_llada_policy(str(FOLDER), reference=False)
    decoding = record["evaluation"]
    assert decoding["sampler"] == "low-confidence" and decoding["temperature"] == 0.0
    task = countdown(**record["task_options"], seed=record["seed"])
    items = list(task.test_items())[:decoding["items"]]
    greedy = LowConfidenceSampler(gen_length=decoding["gen_length"], block_length=decoding["block_length"],
                                  steps=decoding["steps"], temperature=0.0)
    metrics, records = evaluate(policy, task, greedy, items, batch_size=len(items), gen_length=decoding["gen_length"])
    assert abs(metrics["accuracy"] - record["accuracy"]) < 0.01  # the figure BUILD.json and docs/baselines.md give
    assert 0.10 <= metrics["accuracy"] <= 0.30  # weak on purpose: RL has room
    assert tool.uses_given_numbers(records, items) >= 0.5  # most answers already use the given numbers
    assert record["rollout_groups"]["mixed_groups"] >= 0.5  # RL-able: most groups hold a mix of rewards


def test_shipped_base_is_small_and_an_original_layout_llada_checkpoint():
    config = json.loads((FOLDER / "config.json").read_text())
    assert config["model_type"] == "llada" and config["rope"] is False
    index = json.loads((FOLDER / "model.safetensors.index.json").read_text())
    assert all(name.startswith("model.transformer.") for name in index["weight_map"])
    assert sum(p.stat().st_size for p in FOLDER.iterdir()) < 10 * 1024**2  # shipped under 10 MB


def test_shipped_recipe_is_the_build_commands_and_evaluates_as_the_base_was_measured(record):
    from dmpo_core.training import TrainConfig
    from dmpo_core.training.build import plan

    shipped = builtin.recommended_config(f"builtin:{tool.NAME}")
    assert shipped == tool.RECIPE and shipped["task_options"] == record["task_options"]
    sampler = plan(TrainConfig.from_dict(shipped)).eval_sampler
    assert (type(sampler).__name__, sampler.steps, sampler.temperature) == (
        "LowConfidenceSampler", record["evaluation"]["steps"], 0.0)
    assert shipped["rollout"]["gen_length"] == record["evaluation"]["gen_length"]


def test_a_training_target_decodes_to_an_answer_that_scores_one():
    from dmpo.backends.tiny import make_tiny_tokenizer

    tok = make_tiny_tokenizer()
    task = countdown(**tool.TASK_OPTIONS, seed=0)
    items = task.train_items()[:64]
    # the tiny tokenizer is character level: "15,5,8>28:" is 10 tokens, one per digit or sign
    assert len(tok(task.prompt({"numbers": [15, 5, 8], "target": 28}, tok), add_special_tokens=False)["input_ids"]) == 10
    import torch

    ids = torch.tensor([tool.target_ids(tok, it["solution"], tok.eos_token_id) for it in items])  # [64, L]
    assert ids.shape == (64, tool.GEN_LENGTH) and bool((ids[:, -1] == tok.eos_token_id).all())  # ends in EOS
    texts = decode_completions(tok, ids, [tok.eos_token_id])
    assert texts == [it["solution"] for it in items]
    assert [task.score(t, it) for t, it in zip(texts, items)] == [1.0] * 64


def test_the_build_runs_end_to_end_for_a_few_steps(tmp_path):
    record = tool.build(tmp_path / "m", seed=0, target=2.0, max_steps=2, lr=1e-3, batch_size=4, eval_every=1,
                        eval_size=8, mix_prompts=4)
    assert record["steps"] == 2 and len(record["history"]) == 2  # target 2.0 is never reached
    assert set(record["rollout_groups"]) >= {"mixed_groups", "rollout_accuracy"}
    assert (tmp_path / "m" / "dmpo_train.yaml").exists()
    assert json.loads((tmp_path / "m" / "BUILD.json").read_text())["evaluation"]["items"] == 8
    policy = load_llada_policy(str(tmp_path / "m"), reference=False)
    assert policy.mask_id == json.loads((tmp_path / "m" / "config.json").read_text())["mask_token_id"]
    with pytest.raises(SystemExit):
        tool.main(["--help"])
