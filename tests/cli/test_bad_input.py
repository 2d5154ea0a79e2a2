"""Bad input is one line and exit 2, before any model loads; nothing is silently accepted
(reliability items 8 and 9)."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from dmpo.cli import main as cli_main
from dmpo.cli.configfile import MAX_NODES, load_yaml

cli_main._add_builtin_commands()
CLI = cli_main.cli

BOMB = "\n".join(
    ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
)  # 10^9 values once expanded


def train(tmp_path, *args: str):
    return CliRunner().invoke(CLI, ["train", "--output-dir", str(tmp_path / "run"), *args])


def one_line_exit_2(result) -> str:
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output, result.output
    return result.output


@pytest.mark.parametrize(("content", "needle"), [
    (b"seed: 1\nseed: 2\n", "key 'seed' appears twice (lines 1 and 2)"),
    (b"rollout:\n  group_size: 4\n  group_size: 8\n", "key 'group_size' appears twice"),
    (b"seed: \xff\xfe 1\n", "not UTF-8 text"),
    (BOMB.encode(), "alias bomb"),
    (b"seed: 9223372036854775808\n", "seed=9223372036854775808"),
    (b"seed: [1, 2\n", "not valid YAML"),
])
def test_a_bad_config_file_is_one_line_within_a_second_of_parsing(tmp_path, content, needle):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(content)
    t0 = time.perf_counter()
    out = one_line_exit_2(train(tmp_path, "--config", str(path)))
    assert time.perf_counter() - t0 < 5.0  # parsing and checks; the model is never loaded
    assert needle in out
    assert not (tmp_path / "run").exists()


def test_an_alias_bomb_is_refused_without_being_built():
    t0 = time.perf_counter()
    with pytest.raises(Exception, match="alias bomb"):
        load_yaml(BOMB)
    assert time.perf_counter() - t0 < 1.0
    assert load_yaml("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}  # ordinary aliases still work
    assert MAX_NODES >= 10_000


def test_a_repeated_key_in_a_set_value_is_refused(tmp_path):
    out = one_line_exit_2(train(tmp_path, "--set", "task_options={seed: 1, seed: 2}"))
    assert "appears twice" in out


def test_resume_and_overwrite_together_are_refused(tmp_path):
    assert "pass one of them" in one_line_exit_2(train(tmp_path, "--resume", "--overwrite"))


def test_resume_of_a_folder_without_a_run_is_refused(tmp_path):
    out = one_line_exit_2(train(tmp_path, "--resume"))
    assert "holds no run to resume" in out and not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag", ["--gen-length", "--block-length"])
def test_eval_lengths_of_zero_are_refused(flag):
    result = CliRunner().invoke(CLI, ["eval", "--task", "sudoku", "--model", "builtin:sudoku-tiny", flag, "0"])
    assert f"{flag}=0: must be >= 1" in one_line_exit_2(result)


def test_a_chat_template_that_fails_to_render_is_one_line():
    from dmpo.tasks.base import chat_prompt
    from dmpo_core.errors import InvalidArgumentError

    class Tok:
        chat_template = "{{ ''.__class__.__mro__ }}"

        def apply_chat_template(self, *a, **k):
            from jinja2.exceptions import SecurityError

            raise SecurityError("access to attribute '__class__' of 'str' object is unsafe.")

    with pytest.raises(InvalidArgumentError, match=r"chat_template=.*SecurityError.*prompt_style=compact") as err:
        chat_prompt(Tok(), "hello")
    assert "\n" not in str(err.value)
