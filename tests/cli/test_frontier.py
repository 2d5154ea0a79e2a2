"""dmpo frontier: accuracy vs NFE of sweep files and run folders, the Pareto points marked."""

from __future__ import annotations

import json

from click.testing import CliRunner

from dmpo.cli.commands_frontier import pareto
from dmpo.cli.main import _add_builtin_commands, cli

_add_builtin_commands()


def test_pareto_by_hand():
    # (NFE, acc): (2, .2) and (5, .3) are optimal; (6, .25) is beaten by (5, .3); ties keep both
    pts = [{"mean_nfe": n, "accuracy": a} for n, a in ((2, .2), (5, .3), (6, .25), (5, .3))]
    assert pareto(pts) == [True, True, False, True]


def test_frontier_reads_sweeps_and_run_folders(tmp_path):
    sweep = tmp_path / "sweeps.jsonl"
    sweep.write_text("".join(json.dumps(r) + "\n" for r in (
        {"model": "base", "sampler": "eb", "gamma": 0.1, "accuracy": 0.3, "mean_nfe": 5.0},
        {"model": "base", "sampler": "eb", "gamma": 1.0, "accuracy": 0.2, "mean_nfe": 2.0},
        {"model": "x", "accuracy": 0.25, "mean_nfe": 6.0})))
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 3, "eval": True, "eval_accuracy": 0.5,
                                                   "eval_mean_nfe": 9.0}) + "\n" + json.dumps({"step": 3}) + "\n")
    result = CliRunner().invoke(cli, ["frontier", str(sweep), str(run), "--plot", str(tmp_path / "f.png")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()[1:5]
    assert [ln[0] for ln in lines] == ["*", "*", " ", "*"]  # sorted by NFE: 2, 5, 6 (dominated), 9
    assert "run step 3" in lines[3] and (tmp_path / "f.png").stat().st_size > 0


def test_a_bad_sweep_line_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"accuracy": 0.3}\n')
    result = CliRunner().invoke(cli, ["frontier", str(bad)])
    assert result.exit_code != 0 and "bad.jsonl:1" in result.output
