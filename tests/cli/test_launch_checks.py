"""Under a launcher with several ranks, a run that cannot share its steps is refused in one
line before any model loads."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dmpo.cli import main as cli_main

cli_main._add_builtin_commands()


def train(tmp_path, *args: str):
    return CliRunner().invoke(cli_main.cli, ["train", "--output-dir", str(tmp_path / "run"), *args])


@pytest.mark.parametrize(("args", "needle"), [
    ((), "engine 'local' trains in one process"),
    (("--engine", "ddp", "--set", "rollout.prompts_per_step=3"), "does not split into 2 ranks"),
])
def test_a_launch_that_cannot_share_its_steps_is_one_line(tmp_path, monkeypatch, args, needle):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    result = train(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert needle in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "run").exists()


def test_an_engine_of_one_process_under_a_launch_stops_before_a_step(monkeypatch):
    from dmpo_core.errors import TrainingError
    from dmpo_core.training import ranks
    from dmpo.backends.engines import LocalEngine
    from dmpo_core.testing.toys import ToyPolicy

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TrainingError, match="the launcher started 2 ranks"):
        ranks.check_split(LocalEngine(ToyPolicy()), 4)
