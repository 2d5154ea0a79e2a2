"""Evaluation protocol presets (d1, dmpo, our default) with explicit options winning, and the
full protocol recorded with every `dmpo eval` output."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dmpo.cli import main as cli_main
from dmpo_core.errors import ConfigError
from dmpo_core.protocols import PRESETS, items_fingerprint, resolve_decoding

cli_main._add_builtin_commands()
CLI = cli_main.cli


@pytest.mark.parametrize(("name", "steps", "block"), [("d1", 128, 32), ("dmpo", 256, 32), ("default", 128, 32)])
def test_presets_at_length_256(name, steps, block):
    d = resolve_decoding(name, gen_length=256)
    assert (d.steps, d.block_length, d.temperature, d.sampler, d.remasking) == (
        steps, block, 0.0, "low-confidence", "low_confidence")
    assert d.explicit == ()


def test_default_takes_the_models_recommended_block_and_the_papers_presets_do_not():
    assert resolve_decoding("default", gen_length=16, recommended_block_length=16).block_length == 16
    assert resolve_decoding("default", gen_length=16).block_length == 16  # 32 cut to the length
    assert resolve_decoding("dmpo", gen_length=16, recommended_block_length=16).block_length == 32


def test_explicit_options_win_over_the_preset():
    d = resolve_decoding("d1", gen_length=256, steps=64, block_length=64, temperature=0.5, sampler="fast-dllm")
    assert (d.steps, d.block_length, d.temperature, d.sampler) == (64, 64, 0.5, "fast-dllm")
    assert d.remasking is None  # another sampler does not get the low-confidence remasking rule
    assert d.explicit == ("block_length", "steps", "temperature", "sampler")


def test_an_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match="--protocol='d2': choose one of default, d1, dmpo"):
        resolve_decoding("d2", gen_length=16)
    assert list(PRESETS) == ["default", "d1", "dmpo"]


def test_fingerprints_tell_item_sets_apart():
    a, b = [{"q": 1}, {"q": 2}], [{"q": 2}, {"q": 1}]
    assert items_fingerprint(a) == items_fingerprint([dict(x) for x in a]) != items_fingerprint(b)


def _eval(*args: str):
    return CliRunner().invoke(CLI, ["eval", "--task", "sudoku", "--model", "builtin:sudoku-tiny", *args],
                              catch_exceptions=False)


def _protocol(output: str) -> dict:
    line = next(ln for ln in output.splitlines() if ln.startswith("protocol: "))
    return json.loads(line[len("protocol: "):])


def test_eval_records_the_dmpo_protocol_in_every_output(tmp_path):
    out = tmp_path / "gens.jsonl"
    result = _eval("--protocol", "dmpo", "--block-length", "16", "--limit", "4", "--batch-size", "4",
                   "--seed", "3", "--output", str(out))
    assert result.exit_code == 0, result.output
    shown = _protocol(result.output)
    assert shown["preset"] == "dmpo" and shown["explicit"] == ["block_length"]
    assert (shown["gen_length"], shown["block_length"], shown["steps"], shown["temperature"]) == (16, 16, 16, 0.0)
    assert shown["sampler"]["name"] == "low-confidence" and shown["sampler"]["options"]["remasking"] == "low_confidence"
    assert shown["prompt_style"] == "compact" and shown["metrics"] == {"accuracy": "sudoku-cells/1"}
    assert shown["dataset"]["size"] == 4 and shown["seed"] == 3 and shown["limit"] == 4
    rows = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert len(rows) == 4 and all(r["protocol"] == shown for r in rows)


def test_eval_default_protocol_is_unchanged_and_explicit_steps_win():
    result = _eval("--limit", "2", "--batch-size", "2", "--steps", "4")
    assert result.exit_code == 0, result.output
    shown = _protocol(result.output)
    assert shown["preset"] == "default" and shown["steps"] == 4 and shown["block_length"] == 16


def test_a_papers_block_that_does_not_fit_the_length_is_one_line():
    result = _eval("--protocol", "d1", "--limit", "2")  # the built-in model's length 16 is shorter than block 32
    assert result.exit_code == 2
    assert "block_length=32" in result.output and len(result.output.strip().splitlines()) == 1, result.output
