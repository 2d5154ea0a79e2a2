"""Every task trains for a few steps through `dmpo train` and evaluates through `dmpo eval`,
on a tiny random LLaDA checkpoint whose character tokenizer covers the tasks' text and on
small local data files (no hub)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dmpo.backends.tiny import write_tiny_llada
from dmpo.cli import main as cli_main

cli_main._add_builtin_commands()
CLI = cli_main.cli


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(write_tiny_llada(tmp_path_factory.mktemp("model") / "llada", d_model=32, n_layers=1, n_heads=2))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for split, offset in (("train", 0), ("test", 100)):
        gsm = [{"question": f"Tom has {i} apples and buys 2 more. How many?",
                "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}"} for i in range(offset, offset + 6)]
        (root / f"gsm-{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gsm))
        math = [{"problem": f"What is ${i}+{i}$?", "answer": str(2 * i), "solution": f"$\\boxed{{{2 * i}}}$"}
                for i in range(offset, offset + 6)]
        (root / f"math-{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in math))
    return root


def task_options(task: str, data) -> list[str]:
    if task in ("gsm8k", "math500"):
        name = {"gsm8k": "gsm", "math500": "math"}[task]
        return [f"task_options.train_source={data / f'{name}-train.jsonl'}",
                f"task_options.test_source={data / f'{name}-test.jsonl'}"]
    return ["task_options.n_train=50", "task_options.n_test=8"]


@pytest.mark.parametrize("task", ["countdown", "gsm8k", "math500"])
@pytest.mark.parametrize("style", ["compact", "chat"])
def test_each_task_trains_and_evaluates(tmp_path, tiny_model, data, task, style):
    sets = [*task_options(task, data), f"task_options.prompt_style={style}", "total_steps=2", "eval_size=4",
            "eval_batch_size=4", "rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.gen_length=16",
            "rollout.block_length=8", "rollout.steps=4", "rollout.temperature=1.0", "loss.num_iterations=1",
            "optim.lr=1e-3"]
    args = ["train", "--backend", "llada", "--task", task, "--model", tiny_model, "--output-dir",
            str(tmp_path / "run"), "--quiet"]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(CLI, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    steps = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if not r.get("eval")] == [1, 2]
    assert any(k.startswith("reward/") for k in steps[-2])  # per-component means are logged

    out = tmp_path / "gens.jsonl"
    ev = ["eval", "--task", task, "--model", str(tmp_path / "run" / "checkpoints" / "step-000002" / "policy"),
          "--gen-length", "16", "--block-length", "8", "--limit", "3", "--batch-size", "3", "--output", str(out)]
    for s in sets[:2]:
        ev += ["--task-option", s.removeprefix("task_options.")]
    ev += ["--task-option", f"prompt_style={style}"]
    result = CliRunner().invoke(CLI, ev, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output
    assert len(out.read_text().splitlines()) == 3
