"""``dmpo plugins``: the table and ``--json`` output, through click's CliRunner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from dmpo.cli import main as cli_main

from dmpo_core import builtin, hookimpl
from dmpo_core import registry as registry_module
from dmpo_core.registry import build_registry


@pytest.fixture
def fixed_registry(monkeypatch):
    """The process-wide registry replaced by the built-in core plugin and one broken plugin."""

    class Broken:
        @staticmethod
        @hookimpl
        def register_weightings(register):
            raise RuntimeError("cannot register")

    reg = build_registry(plugins=[("core", builtin), ("broken", Broken)], entry_points=False)
    monkeypatch.setattr(registry_module, "_DEFAULT", reg)
    cli_main._add_builtin_commands()
    return reg


def test_plugins_lists_components_and_failures(fixed_registry):
    result = CliRunner().invoke(cli_main.cli, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "core" in result.output
    for name in ("dmpo", "dmpo-mean", "dmpo-none", "dmpo-unbiased", "wdce", "ddo"):
        assert name in result.output
    assert "broken  FAILED TO LOAD: RuntimeError: cannot register" in result.output


def test_plugins_json(fixed_registry):
    result = CliRunner().invoke(cli_main.cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["loaded"] == ["core"]
    assert data["failed"] == {"broken": "RuntimeError: cannot register"}
    names = {(c["kind"], c["name"]) for c in data["components"]}
    assert ("weighting", "dmpo") in names and ("objective", "wdce") in names
    assert all(c["help"] for c in data["components"])


def test_plugins_kind_filter(fixed_registry):
    result = CliRunner().invoke(cli_main.cli, ["plugins", "--json", "--kind", "objective"])
    assert result.exit_code == 0, result.output
    assert sorted(c["name"] for c in json.loads(result.output)["components"]) == ["ddo", "diffpo", "diffu-grpo", "wdce"]


def test_plugins_rejects_an_unknown_kind(fixed_registry):
    result = CliRunner().invoke(cli_main.cli, ["plugins", "--kind", "nonsense"])
    assert result.exit_code == 2
    assert "nonsense" in result.output
