"""``dmpo eval --sweep``: one row per value of a sampler option, a table and a plot; bad sweeps
are one-line errors before any model loads."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner
from dmpo.cli.eval_sweep import parse_sweep
from dmpo.cli import main as cli_main

cli_main._add_builtin_commands()
CLI = cli_main.cli


def test_parse_sweep_types_the_values():
    assert parse_sweep("threshold=0.5,0.9") == ("threshold", [0.5, 0.9])
    assert parse_sweep("cache=none,dual") == ("cache", ["none", "dual"])


def test_sweep_writes_one_row_per_value_and_a_plot(tmp_path):
    table = tmp_path / "sweep.csv"
    result = CliRunner().invoke(CLI, [
        "eval", "--task", "sudoku", "--model", "builtin:sudoku-tiny", "--limit", "8", "--batch-size", "8",
        "--sampler", "fast-dllm", "--sweep", "threshold=0.5,1.0", "--sweep-output", str(table)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(table.open()))
    assert [float(r["threshold"]) for r in rows] == [0.5, 1.0]
    for r in rows:
        assert 0.0 <= float(r["accuracy"]) <= 1.0
        assert float(r["tokens_per_s"]) > 0
    # threshold 1.0 commits one token per step: NFE = the free cells of the puzzle; 0.5 needs no more
    assert float(rows[0]["mean_nfe"]) <= float(rows[1]["mean_nfe"])
    assert (tmp_path / "sweep.png").stat().st_size > 0


def test_sweep_runs_wino_on_the_builtin_model(tmp_path):
    table = tmp_path / "wino.csv"
    result = CliRunner().invoke(CLI, [
        "eval", "--task", "sudoku", "--model", "builtin:sudoku-tiny", "--limit", "4", "--batch-size", "4",
        "--sampler", "wino", "--sweep", "threshold=0.3,1.0", "--sweep-output", str(table)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(table.open()))
    assert [float(r["threshold"]) for r in rows] == [0.3, 1.0]
    assert float(rows[0]["mean_nfe"]) <= float(rows[1]["mean_nfe"])  # 1.0 drafts one token per step


def test_sweep_over_the_cache(tmp_path):
    table = tmp_path / "sweep.jsonl"
    result = CliRunner().invoke(CLI, [
        "eval", "--task", "sudoku", "--model", "builtin:sudoku-tiny", "--limit", "4", "--sampler", "low-confidence",
        "--steps", "16", "--sweep", "cache=none,refresh", "--sweep-output", str(table)])
    assert result.exit_code == 0, result.output
    import json

    rows = [json.loads(ln) for ln in table.read_text().splitlines()]
    assert [r["cache"] for r in rows] == ["none", "refresh"]
    assert rows[0]["accuracy"] == rows[1]["accuracy"] and rows[0]["mean_nfe"] == rows[1]["mean_nfe"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--sweep", "threshold"], "expected KEY=V1,V2"),
    (["--sweep", "threshold=0.5,0.5"], "repeated"),
    (["--sampler", "fast-dllm", "--sweep", "threshold=0.5,2"], "threshold=2"),
    (["--sweep", "nope=1,2"], "nope"),
    (["--sweep-output", "x.csv"], "needs --sweep"),
])
def test_bad_sweeps_are_one_line_errors(args, needle):
    result = CliRunner().invoke(CLI, ["eval", "--task", "sudoku", "--model", "builtin:sudoku-tiny", *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output and len(result.output.strip().splitlines()) == 1, result.output
