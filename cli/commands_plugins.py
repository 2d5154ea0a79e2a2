"""``dmpo plugins``: what every plugin registers."""

from __future__ import annotations

import json

import click

from dmpo_core.errors import UnknownNameError
from dmpo_core.options import describe
from dmpo_core.registry import HOOKS, Entry, get_registry


def _find(registry, name: str, kind: str | None) -> list[Entry]:
    """Every component called ``name`` (or aliased so), of ``kind`` or of any kind."""
    found = []
    for k in [kind] if kind else list(HOOKS):
        try:
            found.append(registry.get(k, name))
        except UnknownNameError:
            continue
    return found


def _show_options(entry: Entry) -> None:
    click.echo(f"{entry.kind} {entry.name}  (plugin {entry.plugin}){': ' + entry.help if entry.help else ''}")
    if entry.aliases:
        click.echo(f"  aliases: {', '.join(entry.aliases)}")
    for key, value in entry.fixed.items():
        click.echo(f"  {key} = {value!r} (fixed by the name)")
    if entry.options is None:
        click.echo("  options: not declared (the factory checks its own keywords)")
        return
    docs = describe(entry.options, fixed=entry.fixed)
    if not docs:
        click.echo("  options: none")
    for doc in docs:
        click.echo(f"  {doc.name}: {doc.type} = {doc.default!r}")
        if doc.help:
            click.echo(f"      {doc.help}")


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
@click.option("--kind", type=click.Choice(sorted(HOOKS)), default=None, help="Only components of this kind.")
def plugins(name: str | None, as_json: bool, kind: str | None) -> None:
    """List the loaded plugins, what each registers, and plugins that failed to load.

    With NAME (e.g. `dmpo plugins dmpo-mean`), show that component's options: type,
    default and help of each, what `--set weighting.options.KEY=...` (or the matching
    `*_options` key) accepts.

    Third-party plugins come from the entry-point group `dmpo`; set DMPO_PLUGINS to a
    comma-separated list of entry-point names to load only those.
    """
    registry = get_registry()
    if name is not None:
        found = _find(registry, name, kind)
        if not found:
            names = sorted({e.name for e in registry.entries(kind)})
            raise UnknownNameError(kind or "component", name, names)
        if as_json:
            click.echo(json.dumps([{
                "kind": e.kind, "name": e.name, "plugin": e.plugin, "help": e.help, "fixed": dict(e.fixed),
                "options": None if e.options is None else [
                    {"name": d.name, "type": d.type, "default": repr(d.default), "help": d.help}
                    for d in describe(e.options, fixed=e.fixed)],
            } for e in found], indent=2))
            return
        for entry in found:
            _show_options(entry)
        return
    entries = registry.entries(kind)
    if as_json:
        out = {
            "loaded": registry.report.loaded,
            "failed": registry.report.failed,
            "components": [
                {"kind": e.kind, "name": e.name, "plugin": e.plugin, "aliases": list(e.aliases), "help": e.help}
                for e in entries
            ],
        }
        click.echo(json.dumps(out, indent=2))
        return
    by_plugin: dict[str, list] = {name: [] for name in registry.report.loaded}
    for e in entries:
        by_plugin.setdefault(e.plugin, []).append(e)
    for name, items in by_plugin.items():
        click.echo(f"{name}")
        for e in items:
            alias = f" (aliases: {', '.join(e.aliases)})" if e.aliases else ""
            click.echo(f"  {e.kind:<10} {e.name:<16} {e.help}{alias}")
    for name, reason in registry.report.failed.items():
        click.echo(f"{name}  FAILED TO LOAD: {reason}")
