"""A checkpoint of `dmpo train` evaluates as it was trained, with no options repeated by hand.

One short run of the built-in model (Sudoku, 16-token completions, compact prompts, fixed
givens, 8 evaluation steps, 256 learned positions) is trained once; its saved policy is
then evaluated, generated from and exported through the command line.
"""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from dmpo.cli import main as cli_main
from dmpo_core.training.recipe import RECIPE_FILE, read_recipe

cli_main._add_builtin_commands()
CLI = cli_main.cli

SHORT = ["--set", "total_steps=1", "--set", "eval_size=0", "--set", "save_every=1",
         "--set", "rollout.prompts_per_step=2", "--set", "rollout.group_size=2", "--set", "loss.num_iterations=1"]
#: The five options a user had to repeat by hand before checkpoints carried their recipe.
BY_HAND = ["--gen-length", "16", "--block-length", "16", "--steps", "8",
           "--task-option", "prompt_style=compact", "--task-option", "fixed_givens=true"]


def run(*args: str):
    return CliRunner().invoke(CLI, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The run's output and its step folder; the run asks for both layouts."""
    out = tmp_path_factory.mktemp("travel") / "run"
    result = run("train", "--task", "sudoku", "--model", "builtin:sudoku-tiny", "--output-dir", str(out), "--quiet",
                 *SHORT, "--set", "checkpoint_layouts=[original, hf]")
    assert result.exit_code == 0, result.output
    return result.output, out / "checkpoints" / "step-000001"


@pytest.fixture(scope="module")
def policy_dir(trained):
    return trained[1] / "policy"


def _eval(policy, tmp_path, name, *extra):
    out = tmp_path / f"{name}.jsonl"
    result = run("eval", "--task", "sudoku", "--model", str(policy), "--limit", "4", "--batch-size", "4",
                 "--output", str(out), *extra)
    return result, out


def test_the_saved_policy_carries_its_recipe(policy_dir):
    recipe = read_recipe(policy_dir)
    assert recipe is not None
    assert (recipe.task, recipe.gen_length, recipe.block_length, recipe.steps, recipe.step) == ("sudoku", 16, 16, 8, 1)
    assert recipe.task_options == {"prompt_style": "compact", "fixed_givens": True}
    assert (recipe.backend, recipe.base_model) == ("llada", "builtin:sudoku-tiny")


def test_a_checkpoint_evaluates_with_no_options_as_with_the_options_by_hand(policy_dir, tmp_path):
    plain, plain_out = _eval(policy_dir, tmp_path, "plain")
    by_hand, hand_out = _eval(policy_dir, tmp_path, "hand", *BY_HAND)
    assert plain.exit_code == 0 and by_hand.exit_code == 0, (plain.output, by_hand.output)
    assert "note:" not in plain.stderr and "note:" not in by_hand.stderr  # nothing differs from the recipe
    assert plain.stdout.split("seconds")[0] == by_hand.stdout.split("seconds")[0]  # the same accuracy line
    records = [json.loads(ln) for ln in plain_out.read_text().splitlines()]
    hand = [json.loads(ln) for ln in hand_out.read_text().splitlines()]
    protocols = [r.pop("protocol") for r in records], [r.pop("protocol") for r in hand]
    assert records == hand
    for mine, theirs in zip(*protocols):  # the same protocol; only the options given by hand are listed
        assert {**mine, "explicit": None} == {**theirs, "explicit": None} and mine["explicit"] == []
    assert all(len(r["completion"]) == 16 for r in records)  # 16-token completions of a compact prompt


def test_without_its_recipe_the_checkpoint_needs_the_options_by_hand(policy_dir, tmp_path):
    # what the recipe prevents: the plain defaults (256-token completions, chat prompts) do not fit this model
    bare = tmp_path / "bare"
    shutil.copytree(policy_dir, bare)
    (bare / RECIPE_FILE).unlink()
    result, _ = _eval(bare, tmp_path, "bare")
    assert result.exit_code != 0
    by_hand, _ = _eval(bare, tmp_path, "bare-hand", *BY_HAND)
    assert by_hand.exit_code == 0, by_hand.output


def test_a_given_option_wins_and_the_difference_is_said_in_one_line(policy_dir, tmp_path):
    result, out = _eval(policy_dir, tmp_path, "steps4", "--steps", "4")
    assert result.exit_code == 0, result.output
    notes = [ln for ln in result.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "--steps 4 (recipe 8)" in notes[0] and RECIPE_FILE in notes[0]
    assert "mean_nfe 4.0000" in result.stdout  # the given 4 steps were used


def test_generate_from_a_checkpoint_uses_its_lengths(policy_dir):
    result = run("generate", "--model", str(policy_dir), "--no-chat", "3102200002100320=")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip()) == 16


def test_generate_takes_the_prompt_style_from_the_recipe(policy_dir):
    # the run trained on compact prompts: no chat template unless asked, and asking says so in one line
    plain = run("generate", "--model", str(policy_dir), "--no-chat", "3102200002100320=")
    default = run("generate", "--model", str(policy_dir), "3102200002100320=")
    assert default.exit_code == 0 and default.stdout == plain.stdout and "chat" not in default.stderr
    wrapped = run("generate", "--model", str(policy_dir), "--chat", "3102200002100320=")
    assert wrapped.exit_code == 0, wrapped.output
    assert wrapped.stderr.strip().splitlines() == [
        f"--chat differs from the recipe in {policy_dir / RECIPE_FILE} (prompt_style=compact)"]


def test_export_to_the_original_layout_keeps_the_recipe_and_hf_is_refused_for_absolute_positions(policy_dir,
                                                                                                   tmp_path):
    result = run("export", str(policy_dir), "--format", "original", "--output", str(tmp_path / "copy"))
    assert result.exit_code == 0, result.output
    assert read_recipe(tmp_path / "copy") == read_recipe(policy_dir)
    refused = CliRunner().invoke(CLI, ["export", str(policy_dir), "--format", "hf", "--output", str(tmp_path / "hf")])
    assert refused.exit_code == 2 and "absolute positions" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and not (tmp_path / "hf").exists()


def test_a_run_asked_for_both_layouts_says_it_cannot_write_hf_for_this_model(trained):
    # the built-in model has learned absolute positions (no stock transformers class): policy/ is written, and why
    # policy-hf/ is not is said, instead of the run failing at its first checkpoint
    output, step = trained
    assert (step / "policy" / RECIPE_FILE).is_file() and not (step / "policy-hf").exists()
    assert "policy-hf/ not written" in output and "absolute positions" in output


def test_a_builtin_models_sudoku_options_do_not_reach_another_task():
    from dmpo.cli.commands_train import resolve_config
    from dmpo_core.training.build import plan

    cfg = resolve_config(None, "countdown", "builtin:sudoku-tiny", None, ())
    assert "fixed_givens" not in cfg.task_options
    plan(cfg)  # checks every option: no "fixed_givens: unknown key"


def test_a_lora_run_saves_an_adapter_that_evaluates_as_its_merged_policy(tmp_path):
    out = tmp_path / "lora"
    result = run("train", "--output-dir", str(out), "--quiet", *SHORT, "--set", "backend_options.lora=papers",
                 "--set", "backend_options.lora_r=4", "--set", "optim.lr=0.01")
    assert result.exit_code == 0, result.output
    step = out / "checkpoints" / "step-000001"
    assert read_recipe(step / "adapter") == read_recipe(step / "policy")
    merged, merged_out = _eval(step / "policy", tmp_path, "merged")
    adapter, adapter_out = _eval(step / "adapter", tmp_path, "adapter")  # the folder alone: the recipe names the base
    assert merged.exit_code == 0 and adapter.exit_code == 0, (merged.output, adapter.output)
    def without_model(path):  # the records name the --model they ran (the two folders), all else is equal
        rows = [json.loads(ln) for ln in path.read_text().splitlines()]
        return [{**r, "protocol": {**r["protocol"], "model": None}} for r in rows]

    assert without_model(merged_out) == without_model(adapter_out)
