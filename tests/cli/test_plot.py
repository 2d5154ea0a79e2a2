"""``dmpo plot``: smoothed curves over faint raw points, titles and units, an NFE panel, and
several runs overlaid in one figure (checked on the figure's axes, not by image comparison)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmpo.cli import main as cli_main
from dmpo.cli.commands_plot import figure, moving_average, read_run, run_names

pytest.importorskip("matplotlib")


def write_run(folder: Path, steps: int, *, reward_slope: float = 0.01, torn: bool = False) -> Path:
    folder.mkdir(parents=True)
    lines = [json.dumps({"eval": True, "step": 0, "eval_accuracy": 0.25, "eval_mean_nfe": 8.0, "eval_n": 4.0})]
    for s in range(1, steps + 1):
        lines.append(json.dumps({"step": s, "reward_mean": reward_slope * s + (0.1 if s % 2 else -0.1),
                                 "ess_mean": 0.5, "loss": 1.0 / s, "nfe": 4, "time/total": 0.3}))
    lines.append(json.dumps({"eval": True, "step": steps, "eval_accuracy": 0.5, "eval_mean_nfe": 8.0, "eval_n": 4.0}))
    text = "\n".join(lines) + "\n" + ('{"step": 99, "rew' if torn else "")
    (folder / "metrics.jsonl").write_text(text)
    return folder


def run(*args: str):
    cli_main._add_builtin_commands()
    return CliRunner().invoke(cli_main.cli, list(args), catch_exceptions=False)


def test_moving_average_by_hand():
    # window 2: [1, (1+2)/2, (2+3)/2, (3+4)/2]; window 3 starts with the means of what there is.
    assert moving_average([1, 2, 3, 4], 2) == [1, 1.5, 2.5, 3.5]
    assert moving_average([3, 6, 9, 0], 3) == [3, 4.5, 6, 5]
    assert moving_average([5, 7], 1) == [5, 7]


def test_a_torn_last_line_is_skipped(tmp_path):
    r = read_run(write_run(tmp_path / "a", 10, torn=True))
    assert [s["step"] for s in r.steps] == list(range(1, 11)) and [e["step"] for e in r.evals] == [0, 10]
    assert r.metrics() == ["eval_accuracy"]


def test_every_panel_has_a_title_and_a_unit_and_smoothed_over_faint_raw_points(tmp_path):
    fig = figure([read_run(write_run(tmp_path / "a", 40))], window=4)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Held-out metric", "Rollout reward", "Effective sample size", "Loss",
                      "Function evaluations (NFE)", "Seconds per step"]
    assert all(ax.get_ylabel() and ax.get_xlabel() == "training step" for ax in fig.axes)
    reward = fig.axes[1]
    raw, smooth = reward.lines  # the raw points, then the trailing mean
    assert raw.get_alpha() < 0.5 and raw.get_linestyle() == "None" and len(raw.get_xdata()) == 40
    assert smooth.get_alpha() is None
    # the +-0.1 alternation averages out over 4 steps: at step 40 the mean of steps 37-40 is 0.385
    assert smooth.get_ydata()[-1] == pytest.approx(0.01 * (37 + 38 + 39 + 40) / 4)
    assert list(fig.axes[0].lines[0].get_ydata()) == [25.0, 50.0]  # percent
    assert "trailing mean over 4 steps" in fig._suptitle.get_text()


def test_the_nfe_panel_shows_rollout_and_evaluation_forwards(tmp_path):
    fig = figure([read_run(write_run(tmp_path / "a", 10))], window=1)
    nfe = fig.axes[4]
    labels = [ln.get_label() for ln in nfe.lines]
    assert labels == ["a: rollout", "a: evaluation"]
    assert set(nfe.lines[0].get_ydata()) == {4.0} and set(nfe.lines[1].get_ydata()) == {8.0}


def test_several_runs_are_overlaid_one_colour_each(tmp_path):
    a, b = write_run(tmp_path / "x" / "run", 30), write_run(tmp_path / "y" / "run", 20, reward_slope=0.02)
    names = run_names([a, b])
    assert names == ["x/run", "y/run"]  # equal folder names get their parent's
    fig = figure([read_run(a, names[0]), read_run(b, names[1])])
    for ax in fig.axes:
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any(t.startswith("x/run") for t in legend) and any(t.startswith("y/run") for t in legend), ax.get_title()
    loss = fig.axes[3]
    colours = {ln.get_color() for ln in loss.lines if ln.get_label() == "x/run"}
    others = {ln.get_color() for ln in loss.lines if ln.get_label() == "y/run"}
    assert colours and others and not colours & others


def test_a_key_a_run_never_recorded_says_so(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.5}) + "\n")
    fig = figure([read_run(folder)])
    assert "not recorded (ess_mean)" in [t.get_text() for t in fig.axes[2].texts]


def test_the_command_writes_one_png_for_several_runs(tmp_path, monkeypatch):
    a, b = write_run(tmp_path / "a", 12), write_run(tmp_path / "b", 12)
    out = tmp_path / "cmp.png"
    result = run("plot", str(a), str(b), "--output", str(out), "--smooth", "3")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.chdir(tmp_path)
    assert run("plot", str(a), str(b)).output.strip() == "comparison.png" and (tmp_path / "comparison.png").exists()
    assert run("plot", str(a)).output.strip() == str(a / "metrics.png")


def test_a_folder_without_metrics_is_a_one_line_error(tmp_path):
    result = run("plot", str(tmp_path))
    assert result.exit_code == 2 and "no metrics file" in result.output and len(result.output.splitlines()) == 1
