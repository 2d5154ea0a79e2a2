"""Recommended configs of plugins: registered with the component, layered by ``dmpo train``
under the user's config file, flags and ``--set`` (each of which wins over it)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dmpo_core import hookimpl
from dmpo_core import registry as registry_module
from dmpo_core.errors import InvalidArgumentError
from dmpo_core.registry import DEFAULT_PLUGINS, build_registry
from dmpo_core.testing.toys import CopyDigitsTask, load_toy_policy
from dmpo.cli.commands_train import resolve_config

SEEN_MODELS: list[str] = []


def _backend_recipe(model: str) -> dict:
    SEEN_MODELS.append(model)
    big = model.endswith("-big")
    return {"rollout": {"gen_length": 64 if big else 32, "block_length": 32, "steps": 16}, "optim": {"lr": 3e-5}}


@hookimpl
def _register_backends(register):
    register("rc-backend", load_toy_policy, help="toy", recommended_config=_backend_recipe)


@hookimpl
def _register_tasks(register):
    register("rc-task", CopyDigitsTask, help="toy", recommended_config={
        "rollout": {"steps": 32, "group_size": 4}, "task_options": {"length": 6}, "total_steps": 7})


PLUGIN = SimpleNamespace(register_backends=_register_backends, register_tasks=_register_tasks)


@pytest.fixture
def with_plugin(monkeypatch):
    monkeypatch.setattr(registry_module, "_DEFAULT", build_registry(plugins=[("rc", PLUGIN)], entry_points=False,
                                                                     defaults=True))
    SEEN_MODELS.clear()


def test_the_backend_recipe_for_the_model_then_the_task_recipe_apply(with_plugin):
    cfg = resolve_config("rc-backend", "rc-task", "folder-big", None, ())
    assert SEEN_MODELS == ["folder-big"]
    assert (cfg.rollout.gen_length, cfg.rollout.block_length) == (64, 32)  # the backend's, for this model
    assert cfg.rollout.steps == 32 and cfg.rollout.group_size == 4  # the task's wins over the backend's
    assert cfg.task_options == {"length": 6} and cfg.total_steps == 7 and cfg.optim.lr == 3e-5
    small = resolve_config("rc-backend", "rc-task", "folder", None, ())
    assert small.rollout.gen_length == 32


def test_the_config_file_flags_and_sets_win_over_the_recipes(with_plugin, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("total_steps: 3\nrollout:\n  steps: 8\n")
    cfg = resolve_config("rc-backend", "rc-task", "m", str(path), ("optim.lr=1e-4",))
    assert cfg.total_steps == 3 and cfg.rollout.steps == 8 and cfg.optim.lr == 1e-4
    assert cfg.rollout.group_size == 4  # what the user left alone stays recommended
    by_set = resolve_config(None, None, None, str(path), ("backend=rc-backend", "task=rc-task", "model=x-big"))
    assert by_set.rollout.gen_length == 64 and by_set.task_options == {"length": 6}


def test_options_of_another_task_are_dropped_when_the_user_names_its_options(with_plugin):
    cfg = resolve_config("rc-backend", "rc-task", "m", None, ("task_options={length: 5}",))
    assert cfg.task_options == {"length": 5}


def test_the_demo_command_consults_no_plugin(monkeypatch):
    def refuse():
        raise AssertionError("the registry was loaded for the default backend and task")

    monkeypatch.setattr(registry_module, "get_registry", refuse)
    cfg = resolve_config(None, None, None, None, ("total_steps=5",))
    assert cfg.total_steps == 5 and cfg.weighting.scheme == "dmpo-mean"  # the built-in model's recipe


def test_dmpos_own_components_register_no_recommended_config():
    # The rule the plugin look-up relies on: built-in recipes live with the built-in models.
    own = {name for name, _ in DEFAULT_PLUGINS}
    registry = build_registry(entry_points=False, defaults=True)
    assert {e.plugin for e in registry.entries()} == own
    assert [e.name for e in registry.entries() if e.recommended_config is not None] == []


def test_a_recommended_config_must_be_a_mapping_or_a_function():
    @hookimpl
    def register_tasks(register):
        register("bad-rc", CopyDigitsTask, recommended_config="rollout.steps=4")

    registry = build_registry(plugins=[("bad", SimpleNamespace(register_tasks=register_tasks))], entry_points=False)
    assert "recommended_config" in registry.report.failed["bad"]

    @hookimpl
    def register_backends(register):
        register("bad-fn", load_toy_policy, recommended_config=lambda model: ["not", "a", "mapping"])

    entry = build_registry(plugins=[("b", SimpleNamespace(register_backends=register_backends))],
                           entry_points=False).get("backend", "bad-fn")
    with pytest.raises(InvalidArgumentError, match="recommended_config"):
        entry.recommended("m")


def test_eval_and_generate_run_a_plugin_model_with_its_recommended_config(with_plugin):
    from dmpo.cli.model_choice import choose_model, settings_for

    choice = choose_model("folder-big", backend="rc-backend", task="rc-task")
    assert choice.recipe is not None and choice.recipe_source == "rc-backend's recommended config"
    common = dict(task="rc-task", backend=None, block_length=None, sampler=None, sampler_options={}, task_options={},
                  task_accepts={"length"}.__contains__)
    run = settings_for(choice, gen_length=None, steps=None, **common)
    assert (run.backend, run.gen_length, run.block_length, run.steps) == ("rc-backend", 64, 32, 32)
    assert run.task_options == {"length": 6} and run.note is None
    mine = settings_for(choice, gen_length=32, steps=None, **common)  # an explicit option wins, and is said
    assert mine.gen_length == 32 and "rc-backend's recommended config" in mine.note
    assert choose_model("folder").recipe is None  # dmpo's own backend and task: no plugin consulted
