"""The distribution's name is written once (dmpo_core.distribution) and everything that looks the
distribution up by name agrees with it; ``dmpo --version`` reads the installed metadata."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

from click.testing import CliRunner

from dmpo.cli import main as cli_main
from dmpo_core import __version__, distribution

ROOT = Path(__file__).resolve().parents[2]


def test_version_is_the_installed_metadata_version():
    result = CliRunner().invoke(cli_main.cli, ["--version"], prog_name="dmpo")
    assert result.exit_code == 0, result.output
    installed = importlib.metadata.version("dllm-dmpo")
    assert result.output.strip() == f"dmpo {installed} (distribution dllm-dmpo)"
    assert __version__ == installed


def test_version_of_the_installed_command():
    done = subprocess.run([sys.executable, "-m", "dmpo.cli.main", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"dmpo {importlib.metadata.version('dllm-dmpo')} "), done.stdout


def test_pyproject_and_the_example_plugin_name_the_distribution():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == distribution.NAME == "dllm-dmpo"
    assert project["scripts"] == {"dmpo": "dmpo.cli.main:main"}  # the command keeps its short name
    plugin = tomllib.loads((ROOT / "plugins" / "dmpo-example-weighting" / "pyproject.toml").read_text())["project"]
    assert distribution.NAME in plugin["dependencies"]


def test_the_built_in_entry_points_belong_to_the_installed_distribution():
    eps = importlib.metadata.distribution(distribution.NAME).entry_points
    assert {"core", "samplers", "llada", "sudoku"} <= {ep.name for ep in eps if ep.group == "dmpo"}


def test_spelling_variants_of_the_name_are_the_same_distribution():
    # PEP 503: case and runs of - _ . do not distinguish names on the package index
    assert distribution.is_own("dllm_dmpo") and distribution.is_own("DLLM.DMPO") and distribution.is_own("dllm-dmpo")
    assert not distribution.is_own("dmpo") and not distribution.is_own(None)
