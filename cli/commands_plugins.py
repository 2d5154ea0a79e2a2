"""``dmpo plugins``: what every plugin registers."""

from __future__ import annotations

import json

import click

from dmpo_core.registry import HOOKS, get_registry


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
@click.option("--kind", type=click.Choice(sorted(HOOKS)), default=None, help="Only components of this kind.")
def plugins(as_json: bool, kind: str | None) -> None:
    """List the loaded plugins, what each registers, and plugins that failed to load.

    Third-party plugins come from the entry-point group `dmpo`; set DMPO_PLUGINS to a
    comma-separated list of entry-point names to load only those.
    """
    registry = get_registry()
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
