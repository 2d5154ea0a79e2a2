"""The plugin registry: lookups, collisions, failing plugins, and a meta-test of the hooks."""

from __future__ import annotations

import importlib.metadata
import inspect
from types import ModuleType

import pytest

from dmpo_core import builtin, distribution, hookimpl, hookspecs
from dmpo_core import registry as registry_module
from dmpo_core.errors import DuplicateNameError, UnknownNameError
from dmpo_core.objective import DmpoWeighting
from dmpo_core.registry import HOOKS, build_registry


def fake_plugin(name: str, **hooks) -> ModuleType:
    """A module object carrying ``@hookimpl`` functions, as a plugin's module would."""
    module = ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def registering(*names: str, aliases: tuple[str, ...] = ()):
    def register_weightings(register):
        for name in names:
            register(name, DmpoWeighting, aliases=aliases, help=f"{name} for tests")

    return register_weightings


def core_only():
    return build_registry(plugins=[("core", builtin)], entry_points=False)


def test_builtin_weightings_and_objectives_are_registered():
    reg = core_only()
    assert reg.names("weighting") == ["dmpo", "dmpo-mean", "dmpo-none", "dmpo-unbiased", "grpo"]
    assert reg.names("objective") == ["ddo", "diffpo", "diffu-grpo", "wdce"]
    assert reg.names("sampler") == ["diffpo-eb"]  # the core plugin registers DiFFPO's sampler
    scheme = reg.create("weighting", "dmpo-mean", alpha=0.1)
    assert isinstance(scheme, DmpoWeighting) and scheme.baseline == "mean" and scheme.alpha == 0.1
    assert reg.create("weighting", "dmpo").baseline == "negative"  # the paper's default
    assert reg.report.loaded == ["core"] and reg.report.failed == {}


def test_unknown_name_lists_the_available_names():
    with pytest.raises(UnknownNameError) as info:
        core_only().get("weighting", "dmpo-typo")
    message = str(info.value)
    assert "unknown weighting 'dmpo-typo'" in message
    assert "available: dmpo, dmpo-mean, dmpo-none, dmpo-unbiased" in message
    assert info.value.available == ["dmpo", "dmpo-mean", "dmpo-none", "dmpo-unbiased", "grpo"]


def test_duplicate_name_names_both_plugins_and_the_first_keeps_it():
    first = fake_plugin("first", register_weightings=registering("same"))
    second = fake_plugin("second", register_weightings=registering("same", "other"))
    reg = build_registry(plugins=[("first-plugin", first), ("second-plugin", second)], entry_points=False)
    reason = reg.report.failed["second-plugin"]
    assert reason.startswith("DuplicateNameError") and "'first-plugin'" in reason and "'second-plugin'" in reason
    assert reg.get("weighting", "same").plugin == "first-plugin"
    assert reg.names("weighting") == ["same"]  # the failed plugin is left out whole ("other" too)
    assert reg.report.loaded == ["first-plugin"]
    with pytest.raises(DuplicateNameError) as info:  # adding by hand still raises, naming both
        reg.add(reg.get("weighting", "same"))
    assert info.value.plugins == ("first-plugin", "first-plugin")


def test_an_alias_colliding_with_a_name_is_a_duplicate():
    first = fake_plugin("first", register_weightings=registering("alpha-scheme"))
    second = fake_plugin("second", register_weightings=registering("beta-scheme", aliases=("alpha-scheme",)))
    reg = build_registry(plugins=[("a", first), ("b", second)], entry_points=False)
    assert "alpha-scheme" in reg.report.failed["b"] and reg.names("weighting") == ["alpha-scheme"]


def test_a_third_party_plugin_taking_a_builtin_name_is_isolated():
    hijack = fake_plugin("hijack", register_weightings=registering("dmpo"))
    reg = build_registry(plugins=[("hijack", hijack)], entry_points=False, defaults=True)
    assert reg.get("weighting", "dmpo").plugin == "core"  # the built-in keeps its name
    assert "registered twice" in reg.report.failed["hijack"]
    assert "llada" in reg.names("backend") and "sudoku" in reg.names("task")  # everything else loads


def test_default_plugins_are_the_distributions_entry_points():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert dict(registry_module.DEFAULT_PLUGINS) == project["project"]["entry-points"]["dmpo"]


def test_aliases_resolve_to_the_canonical_entry():
    plugin = fake_plugin("p", register_weightings=registering("long-name", aliases=("ln",)))
    reg = build_registry(plugins=[("p", plugin)], entry_points=False)
    assert reg.get("weighting", "ln").name == "long-name"
    assert reg.names("weighting") == ["long-name"]


def test_a_plugin_failing_to_register_is_reported_and_others_load():
    def register_weightings(register):
        raise RuntimeError("boom while registering")

    broken = fake_plugin("broken", register_weightings=register_weightings)
    reg = build_registry(plugins=[("broken", broken), ("core", builtin)], entry_points=False)
    assert "broken" in reg.report.failed
    assert "RuntimeError: boom while registering" in reg.report.failed["broken"]
    assert reg.report.loaded == ["core"]
    assert "dmpo" in reg.names("weighting")


def test_a_plugin_failing_to_import_is_reported_by_name(monkeypatch):
    # Entry points as if installed: one names a module that does not exist.
    eps = [
        importlib.metadata.EntryPoint(name="broken-import", value="dmpo_no_such_module_xyz", group="dmpo"),
        importlib.metadata.EntryPoint(name="core", value="dmpo_core.builtin", group="dmpo"),
    ]
    monkeypatch.setattr(registry_module, "_entry_points", lambda: eps)
    monkeypatch.delenv("DMPO_PLUGINS", raising=False)
    reg = build_registry(defaults=False)
    assert reg.report.failed["broken-import"].startswith("ModuleNotFoundError")
    assert "dmpo_no_such_module_xyz" in reg.report.failed["broken-import"]
    assert reg.report.loaded == ["core"]


def test_a_misspelt_hook_name_fails_loudly():
    # `register_backend` (no s) matches no hook spec: check_pending rejects the plugin.
    def register_backend(register):
        register("never", object)

    typo = fake_plugin("typo", register_backend=register_backend)
    reg = build_registry(plugins=[("typo", typo), ("core", builtin)], entry_points=False)
    assert "typo" in reg.report.failed
    assert "register_backend" in reg.report.failed["typo"]
    assert reg.report.loaded == ["core"]
    assert reg.names("backend") == []


def test_a_hook_may_take_fewer_arguments_than_its_spec():
    called = []

    def register_commands():
        called.append(True)

    lazy = fake_plugin("lazy", register_commands=register_commands)
    reg = build_registry(plugins=[("lazy", lazy)], entry_points=False)
    assert called == [True] and reg.report.loaded == ["lazy"]


def test_env_var_restricts_third_party_entry_points(monkeypatch):
    def ep(name):
        return importlib.metadata.EntryPoint(name=name, value="dmpo_core.builtin", group="dmpo")

    monkeypatch.setattr(registry_module, "_entry_points", lambda: [ep("wanted"), ep("unwanted")])
    monkeypatch.setenv("DMPO_PLUGINS", "wanted")
    reg = build_registry(defaults=False)
    assert reg.report.loaded == ["wanted"]


def test_loading_the_same_plugin_name_twice_is_idempotent():
    reg = build_registry(plugins=[("core", builtin), ("core", builtin)], entry_points=False)
    assert reg.report.loaded == ["core"]


# --------------------------------------------------------------------------- meta-tests


def _hookspec_functions():
    marker = f"{hookspecs.PROJECT}_spec"
    return {
        name: fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, marker)
    }


def test_every_hookspec_is_documented_and_listed_in_hooks():
    specs = _hookspec_functions()
    assert specs, "no hook specs found"
    for name, fn in specs.items():
        assert name.startswith("register_"), name
        assert inspect.getdoc(fn), f"hook spec {name} has no docstring"
        assert list(inspect.signature(fn).parameters) == ["register"], name
    assert set(specs) == set(HOOKS.values()), "registry.HOOKS and the hook specs disagree"


def test_every_builtin_component_has_help_text():
    own = {
        ep.name
        for ep in importlib.metadata.entry_points(group=registry_module.ENTRY_POINT_GROUP)
        if ep.dist is not None and distribution.is_own(ep.dist.name)
    }
    reg = build_registry(restrict=set())  # this distribution's own plugins only
    assert "core" in reg.report.loaded
    entries = [e for e in reg.entries() if e.plugin in own]
    assert entries
    missing = [f"{e.kind}:{e.name} ({e.plugin})" for e in entries if not e.help.strip()]
    assert not missing, f"built-in components without help text: {missing}"


def test_null_is_accepted_for_an_option_whose_type_admits_none():
    # `device_map: str | dict | None` and `lora: ... | None` written out as null in a config
    kwargs = build_registry().validate("backend", "llada", {"lora": None, "device_map": None}, path="backend_options")
    assert kwargs["lora"] is None and kwargs["device_map"] is None
