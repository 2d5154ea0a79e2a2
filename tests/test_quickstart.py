"""The README's quick start is the one of docs/quickstart.md, and its commands run (with
small step counts; `make demo` and `make test` are checked to be Makefile targets)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent


def quickstart_block(text: str) -> str:
    match = re.search(r"<!-- quickstart -->\n(```bash\n.*?```)\n<!-- /quickstart -->", text, re.S)
    assert match, "no <!-- quickstart --> block"
    return match.group(1)


def test_the_readme_quick_start_is_the_docs_quick_start():
    docs = quickstart_block((ROOT / "docs" / "quickstart.md").read_text())
    assert quickstart_block((ROOT / "README.md").read_text()) == docs


#: Extra arguments that keep each quick-start command to seconds.
CHEAP = {
    "train": ["--quiet", "--set", "total_steps=2", "--set", "eval_size=8", "--set", "eval_batch_size=8",
              "--set", "rollout.prompts_per_step=2", "--set", "rollout.group_size=2", "--set", "save_every=0"],
    "eval": ["--limit", "8"],
}


def test_the_quick_start_commands_run(tmp_path, monkeypatch):
    from dmpo.cli import main as cli_main

    block = quickstart_block((ROOT / "docs" / "quickstart.md").read_text())
    lines = [ln.split("#")[0].strip() for ln in block.splitlines()[1:-1]]
    makefile = (ROOT / "Makefile").read_text()
    monkeypatch.chdir(tmp_path)
    cli_main._add_builtin_commands()
    ran = []
    for line in filter(None, lines):
        words = shlex.split(line)
        if words[0] == "make":
            assert re.search(rf"^{words[1]}:", makefile, re.M), f"the Makefile has no target {words[1]}"
            continue
        if words[0] == "source":
            assert words[1] == ".venv/bin/activate" and "VENV   ?= .venv" in makefile
            continue
        assert words[0] == "dmpo", line
        args = words[1:]
        if args[0] == "eval" and "--limit" in args:
            args[args.index("--limit") + 1] = "8"
            extra = []
        else:
            extra = CHEAP.get(args[0], [])
        result = CliRunner().invoke(cli_main.cli, args + extra, catch_exceptions=False)
        assert result.exit_code == 0, (line, result.output[-2000:])
        ran.append(args[0])
    assert ran == ["plugins", "train", "eval", "plot", "new-plugin"]
    assert (tmp_path / "runs" / "sudoku" / "metrics.png").exists() and (tmp_path / "dmpo-my-sampler").is_dir()


def multi_gpu_block(text: str) -> str:
    match = re.search(r"<!-- multi-gpu -->\n(```bash\n.*?```)\n<!-- /multi-gpu -->", text, re.S)
    assert match, "no <!-- multi-gpu --> block"
    return match.group(1)


def test_the_readme_multi_gpu_launch_is_the_docs_one_and_its_config_checks(monkeypatch):
    """The launch's `dmpo train` arguments pass every check a rank makes before its model loads
    (8 ranks: engine, options, whole groups per rank); the model itself is not downloaded."""
    from dmpo.cli.commands_train import check_launch, resolve_config
    from dmpo_core.training.build import plan

    docs = multi_gpu_block((ROOT / "docs" / "quickstart.md").read_text())
    assert multi_gpu_block((ROOT / "README.md").read_text()) == docs
    command = " ".join(ln.split("#")[0].strip().rstrip("\\") for ln in docs.splitlines()[1:-1])
    words = shlex.split(command.replace("$(which dmpo)", "dmpo"))
    assert words[:3] == ["torchrun", "--nproc-per-node", "8"] and words[3:5] == ["dmpo", "train"], words
    args = words[5:]
    opts = {name: args[args.index(f"--{name}") + 1] for name in ("engine", "backend", "task", "model")}
    sets = tuple(args[i + 1] for i, w in enumerate(args) if w == "--set")
    cfg = resolve_config(opts["backend"], opts["task"], opts["model"], None, sets, None, opts["engine"])
    assert cfg.engine == "deepspeed"
    plan(cfg)
    monkeypatch.setenv("WORLD_SIZE", "8")
    check_launch(cfg)
