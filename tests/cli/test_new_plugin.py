"""``dmpo new-plugin``: every kind's skeleton pip-installs, registers through its entry point
and passes its contract suite; the suites catch a broken component; bad input is one line."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dmpo.cli import main as cli_main
from dmpo.cli.commands_new_plugin import write_skeleton
from dmpo.cli.plugin_templates import KINDS
from dmpo_core.registry import build_registry
from dmpo_core.testing import plugin_kit

#: The weighting laws the end-to-end run keeps (the laws themselves are tested in
#: tests/properties; here the point is that the generated test reaches them).
FEW_LAWS = "not weighting_law or advantages_sum_to_zero"


def run(*args: str):
    cli_main._add_builtin_commands()
    return CliRunner().invoke(cli_main.cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """One skeleton per kind, all pip-installed (no dependencies, no index) into one target folder."""
    root = tmp_path_factory.mktemp("skeletons")
    folders = [write_skeleton(kind, f"kt-{kind}", root / kind) for kind in KINDS]
    target = root / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--disable-pip-version-check", "--target", str(target),
                           *map(str, folders)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, target


def _env(target: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(target), "DMPO_PLUGINS": ",".join(f"kt-{k}" for k in KINDS)}


def test_every_kind_installs_with_its_entry_point(installed):
    _, target = installed
    found = {ep.name: ep.value for dist in importlib.metadata.distributions(path=[str(target)])
             for ep in dist.entry_points if ep.group == "dmpo"}
    assert found == {f"kt-{k}": f"dmpo_kt_{k}" for k in KINDS}


def test_the_registry_loads_every_installed_skeleton_through_its_entry_point(installed, monkeypatch):
    _, target = installed
    monkeypatch.syspath_prepend(str(target))
    registry = build_registry(restrict={f"kt-{k}" for k in KINDS})
    assert not registry.report.failed
    for kind in KINDS:
        assert registry.get(kind, f"kt-{kind}").plugin == f"kt-{kind}"


def test_every_skeletons_tests_pass_from_the_installed_package(installed):
    # The generated tests use only the fixtures of dmpo's pytest plugin (entry point pytest11).
    root, target = installed
    tests = [str(root / kind / "tests") for kind in KINDS]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib",
                           "-k", FEW_LAWS, *tests], capture_output=True, text=True, env=_env(target), cwd=root,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-5000:]
    summary = done.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 24 and "failed" not in summary and "error" not in summary, summary


def _module(folder: Path, edit: tuple[str, str] | None = None):
    """Import the skeleton module in ``folder`` under a fresh name, after replacing ``edit[0]`` by ``edit[1]``."""
    path = next(folder.glob("dmpo_*.py"))
    text = path.read_text()
    if edit:
        assert edit[0] in text
        path.write_text(text.replace(*edit))
    spec = importlib.util.spec_from_file_location(f"skeleton_{folder.name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its source is found for the options' docstrings
    spec.loader.exec_module(module)
    return module


def test_the_sampler_suite_catches_a_sampler_that_overwrites_the_prefill(tmp_path):
    folder = write_skeleton("sampler", "bad-sampler", tmp_path / "s")
    module = _module(folder, ("commit = masked & (masked.cumsum(1) <= share[:, None])",
                              "commit = (masked.cumsum(1) <= share[:, None]) | (step == 0)"))
    # This sampler commits every position at its first step, so it also under-counts forwards:
    # the full sampler contract suite (run first) reports that; the kit's own check the prefill.
    with pytest.raises(AssertionError, match="prefilled token was changed|below the number of blocks"):
        plugin_kit.check_sampler(module, "bad-sampler")


def test_the_objective_suite_catches_a_loss_without_gradient(tmp_path):
    folder = write_skeleton("objective", "bad-loss", tmp_path / "o")
    module = _module(folder, ("loss = -self.scale * (adv * per_row).sum()", "loss = 0.0 * (adv * per_row).sum()"))
    with pytest.raises(AssertionError, match="left every weight unchanged"):
        plugin_kit.check_objective(module, "bad-loss")


def test_the_task_suite_catches_held_out_items_among_the_training_items(tmp_path):
    folder = write_skeleton("task", "leaky", tmp_path / "t")
    module = _module(folder, ("return self._items()[self.train_size:]", "return self._items()[: self.test_size]"))
    with pytest.raises(AssertionError, match="also training items"):
        plugin_kit.check_task(module, "leaky")


def test_a_misspelt_hook_is_reported_by_the_suite(tmp_path):
    folder = write_skeleton("reward", "typo", tmp_path / "r")
    module = _module(folder, ("def register_rewards(", "def register_reward("))
    with pytest.raises(AssertionError, match="did not load"):
        plugin_kit.check_reward(module, "typo")


def test_bad_names_and_a_used_folder_are_one_line_errors(tmp_path):
    bad = run("new-plugin", "sampler", "My_Sampler", "--output", str(tmp_path / "x"))
    assert bad.exit_code == 2 and "NAME='My_Sampler'" in bad.output and len(bad.output.strip().splitlines()) == 1
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    used = run("new-plugin", "task", "my-task", "--output", str(tmp_path / "used"))
    assert used.exit_code == 2 and "not empty" in used.output
    assert (tmp_path / "used" / "keep.txt").read_text() == "mine"
    kind = run("new-plugin", "tokenizer", "x")
    assert kind.exit_code == 2 and "backend" in kind.output


def test_the_skeleton_has_a_readme_a_test_and_the_entry_point(tmp_path):
    result = run("new-plugin", "weighting", "my-scheme", "--output", str(tmp_path / "w"))
    assert result.exit_code == 0, result.output
    files = sorted(str(p.relative_to(tmp_path / "w")) for p in (tmp_path / "w").rglob("*") if p.is_file())
    assert files == ["README.md", "dmpo_my_scheme.py", "pyproject.toml", "tests/test_dmpo_my_scheme.py"]
    pyproject = (tmp_path / "w" / "pyproject.toml").read_text()
    assert '[project.entry-points.dmpo]\nmy-scheme = "dmpo_my_scheme"' in pyproject
    assert 'dependencies = ["dllm-dmpo"]' in pyproject  # dmpo's distribution, not the unrelated `dmpo`
    test_lines = (tmp_path / "w" / "tests" / "test_dmpo_my_scheme.py").read_text().splitlines()
    assert [ln for ln in test_lines if ln.startswith(("import", "from"))] == ["import dmpo_my_scheme"]
