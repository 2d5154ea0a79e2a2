"""``dmpo new-plugin KIND NAME``: write a plugin package skeleton that installs, registers and
passes dmpo's contract suite for its kind."""

from __future__ import annotations

import re
from pathlib import Path

import click

from dmpo_core import distribution
from dmpo_core.errors import InvalidArgumentError
from dmpo.cli import plugin_templates as t

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
HOOKS = {"backend": "register_backends", "sampler": "register_samplers", "weighting": "register_weightings",
         "objective": "register_objectives", "reward": "register_rewards", "task": "register_tasks",
         "engine": "register_engines", "command": "register_commands"}


def names(kind: str, name: str) -> dict[str, str]:
    """The placeholders of the templates for a plugin ``name`` of ``kind``."""
    if not NAME_RE.match(name):
        raise InvalidArgumentError("NAME", name, "use lower-case letters, digits and single dashes, "
                                                 "starting with a letter (e.g. my-sampler)")
    dist = name if name.startswith("dmpo-") else f"dmpo-{name}"
    return {"__NAME__": name, "__DIST__": dist, "__MODULE__": dist.replace("-", "_"),
            "__CLASS__": "".join(part.capitalize() for part in name.split("-")), "__KIND__": kind,
            "__HOOK__": HOOKS[kind], "__DEPENDS__": distribution.NAME}


def render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def skeleton(kind: str, name: str) -> dict[str, str]:
    """Relative path -> text of every file of the skeleton."""
    values = names(kind, name)
    extra = render(t.README_EXTRA.get(kind, ""), values)
    module = values["__MODULE__"]
    return {
        "pyproject.toml": render(t.PYPROJECT, values),
        "README.md": render(t.README, values).replace("__EXTRA__", extra).rstrip() + "\n",
        f"{module}.py": render(t.MODULES[kind], values),
        f"tests/test_{module}.py": render(t.TESTS[kind], values),
    }


def write_skeleton(kind: str, name: str, output: str | Path | None = None) -> Path:
    """Write the skeleton into ``output`` (default: ``./DIST``), which must not exist or be empty."""
    files = skeleton(kind, name)
    folder = Path(output) if output else Path(names(kind, name)["__DIST__"])
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InvalidArgumentError("--output", str(folder), "exists and is not empty; choose a new folder")
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


@click.command("new-plugin")
@click.argument("kind", type=click.Choice(t.KINDS))
@click.argument("name")
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Folder to write (default: ./dmpo-NAME); must not exist or be empty.")
def new_plugin(kind: str, name: str, output: str | None) -> None:
    """Write a plugin package for a component of KIND registered as NAME.

    The package has the component (a working example to replace), its entry point in the
    group `dmpo`, a test that runs dmpo's contract suite for KIND (pytest plugin fixture
    `dmpo_kit`) and a README. `pip install -e FOLDER` registers it; `pytest FOLDER/tests` checks it.
    """
    folder = write_skeleton(kind, name, output)
    click.echo(f"wrote {folder}/: pip install -e {folder} && pytest {folder}/tests")
