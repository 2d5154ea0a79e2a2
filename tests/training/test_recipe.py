"""The recipe a saved policy carries: what it records, how it merges with given options, the
one-line mismatch note, and the layouts a checkpoint holds."""

from __future__ import annotations

import json

import pytest

from dmpo_core.errors import CheckpointError, ConfigError, InvalidArgumentError
from dmpo_core.training.config import TrainConfig
from dmpo_core.training.recipe import (
    RECIPE_FILE,
    Recipe,
    apply_recipe,
    checkpoint_layouts,
    read_recipe,
    save_layouts,
    write_recipe,
)

SUDOKU = Recipe(backend="llada", base_model="builtin:sudoku-tiny", task="sudoku",
                task_options={"prompt_style": "compact", "fixed_givens": True}, prompt_style="compact",
                sampler="low-confidence", sampler_options={"remasking": "low_confidence"},
                gen_length=16, block_length=16, steps=8, step=100)


def test_recipe_from_config_takes_the_evaluation_sampler_and_the_rollout_lengths():
    cfg = TrainConfig.from_dict({"task": "sudoku", "task_options": {"prompt_style": "compact"},
                                 "rollout": {"gen_length": 16, "block_length": 8, "steps": 4,
                                             "sampler_options": {"remasking": "random"}},
                                 "eval_sampler_options": {"steps": 8}})
    recipe = Recipe.from_config(cfg, step=7)
    # eval_sampler_options replace the rollout's options (build.eval_sampler_spec), steps come out of them
    assert (recipe.sampler, recipe.sampler_options, recipe.steps) == ("low-confidence", {}, 8)
    assert (recipe.gen_length, recipe.block_length, recipe.prompt_style, recipe.step) == (16, 8, "compact", 7)
    plain = Recipe.from_config(TrainConfig.from_dict({"rollout": {"sampler_options": {"remasking": "random"}}}))
    assert (plain.steps, plain.sampler_options, plain.prompt_style) == (128, {"remasking": "random"}, None)


def test_recipe_round_trips_through_its_file(tmp_path):
    write_recipe(tmp_path, SUDOKU)
    assert read_recipe(tmp_path) == SUDOKU
    assert json.loads((tmp_path / RECIPE_FILE).read_text())["version"] == 1
    assert read_recipe(tmp_path / "nothing-here") is None


@pytest.mark.parametrize("text, says", [
    ("{not json", "garbled"),
    ('{"version": 99}', "recipe version 99"),
    (json.dumps({**SUDOKU.to_dict(), "colour": "red"}), "unknown keys colour"),
    (json.dumps({**SUDOKU.to_dict(), "gen_length": 0}), "gen_length=0"),
    (json.dumps({"version": 1, "backend": "llada"}), "incomplete"),
])
def test_a_damaged_recipe_is_one_line_naming_the_file(tmp_path, text, says):
    (tmp_path / RECIPE_FILE).write_text(text)
    with pytest.raises(CheckpointError, match=says) as err:
        read_recipe(tmp_path)
    assert RECIPE_FILE in str(err.value) and "\n" not in str(err.value)


def test_without_given_options_the_recipe_is_used_and_nothing_is_said():
    s = apply_recipe(SUDOKU, task="sudoku")
    assert (s.backend, s.gen_length, s.block_length, s.steps, s.sampler) == ("llada", 16, 16, 8, "low-confidence")
    assert s.task_options == {"prompt_style": "compact", "fixed_givens": True}
    assert s.sampler_options == {"remasking": "low_confidence"}
    assert s.note is None
    # the same values given by hand are no mismatch either
    same = apply_recipe(SUDOKU, task="sudoku", gen_length=16, block_length=16, steps=8,
                        task_options={"prompt_style": "compact"})
    assert same.note is None and same.task_options == s.task_options


def test_given_options_win_and_every_difference_is_said_in_one_line():
    s = apply_recipe(SUDOKU, task="sudoku", gen_length=32, steps=4, task_options={"prompt_style": "chat"},
                     sampler_options={"remasking": "random"}, label="R")
    assert (s.gen_length, s.block_length, s.steps) == (32, 16, 4)
    assert s.task_options == {"prompt_style": "chat", "fixed_givens": True}
    assert s.sampler_options == {"remasking": "random"}
    assert s.note is not None and "\n" not in s.note and s.note.startswith("note: options that differ from R")
    for part in ("--gen-length 32 (recipe 16)", "--steps 4 (recipe 8)", "--task-option prompt_style=chat "
                 "(recipe compact)", "--sampler-option remasking=random (recipe low_confidence)"):
        assert part in s.note


def test_the_recipes_steps_apply_only_at_its_length():
    # 8 steps were chosen for 16 tokens; at 64 tokens the plain default gen_length / 2 applies
    assert apply_recipe(SUDOKU, task="sudoku", gen_length=64).steps == 32
    assert apply_recipe(None, task="sudoku").steps == 128


def test_task_options_apply_only_to_their_own_task():
    s = apply_recipe(SUDOKU, task="countdown")
    assert s.task_options == {}  # no fixed_givens for countdown
    assert "--task countdown (recipe sudoku" in s.note
    # the prompt style is carried to a task that has the option
    carried = apply_recipe(SUDOKU, task="countdown", task_accepts=lambda key: key == "prompt_style")
    assert carried.task_options == {"prompt_style": "compact"}


def test_another_sampler_drops_the_recipes_sampler_options():
    s = apply_recipe(SUDOKU, task="sudoku", sampler="roar")
    assert s.sampler_options == {} and "--sampler roar (recipe low-confidence)" in s.note


def test_without_a_recipe_the_plain_defaults_apply():
    s = apply_recipe(None, task="gsm8k")
    assert (s.backend, s.gen_length, s.block_length, s.steps, s.sampler, s.note) == (
        "llada", 256, 32, 128, "low-confidence", None)


def test_checkpoint_layouts_follow_the_config_and_lora():
    assert checkpoint_layouts(TrainConfig()) == {"policy": None}
    both = TrainConfig.from_dict({"checkpoint_layouts": ["original", "hf"]})
    assert checkpoint_layouts(both) == {"policy": None, "policy-hf": "converted"}
    lora = TrainConfig.from_dict({"backend_options": {"lora": "papers"}})
    assert checkpoint_layouts(lora) == {"policy": None, "adapter": "adapter"}


@pytest.mark.parametrize("bad", [[], ["original", "original"], ["safetensors"]])
def test_bad_checkpoint_layouts_are_a_config_error(bad):
    with pytest.raises(ConfigError, match="checkpoint_layouts"):
        TrainConfig.from_dict({"checkpoint_layouts": bad})


class _Saver:
    """A policy whose ``save`` writes a marker file, and refuses the ``converted`` format."""

    def save(self, path: str, *, format: str | None = None) -> None:
        if format == "converted":
            raise InvalidArgumentError("format", format, "no stock class for this model")
        from pathlib import Path

        Path(path).mkdir(parents=True)
        (Path(path) / "weights").write_text(str(format))


def test_save_layouts_writes_each_with_its_recipe_and_says_what_it_cannot_convert(tmp_path):
    notes: list[str] = []
    written = save_layouts(_Saver(), tmp_path, {"policy": None, "policy-hf": "converted", "adapter": "adapter"},
                           recipe=SUDOKU, notice=notes.append, label="checkpoint step-000001")
    assert written == ["policy", "adapter"]
    assert read_recipe(tmp_path / "policy") == SUDOKU and read_recipe(tmp_path / "adapter") == SUDOKU
    assert not (tmp_path / "policy-hf").exists()
    assert len(notes) == 1 and "checkpoint step-000001: policy-hf/ not written" in notes[0]
    with pytest.raises(InvalidArgumentError):  # the only layout asked for: its error is the run's
        save_layouts(_Saver(), tmp_path / "x", {"policy-hf": "converted"}, recipe=None)
