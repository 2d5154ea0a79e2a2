"""Entry point of the ``dmpo`` command: the command group and error handling.

Library code raises typed errors (:mod:`dmpo_core.errors`); here, and only here, they
become a one-line message on stderr and an exit code (2 for bad input, 1 otherwise).
"""

from __future__ import annotations

import sys

import click

from dmpo_core import distribution
from dmpo_core.errors import DmpoError


class DmpoGroup(click.Group):
    """A click group that reports dmpo's typed errors in one line, and finds plugin commands
    (the ``register_commands`` hook) only when a name is not a built-in command or the
    commands are listed, so that ``dmpo train --help`` loads no plugin (and no torch)."""

    _plugin_commands: dict[str, click.Command] | None = None

    def plugin_commands(self) -> dict[str, click.Command]:
        """Commands registered through the ``register_commands`` hook (built-in names win)."""
        if self._plugin_commands is None:
            from dmpo_core.registry import get_registry

            found: dict[str, click.Command] = {}
            try:
                registry = get_registry()
            except DmpoError as err:  # a broken plugin set must not hide `dmpo --help`
                click.echo(f"warning: {err}", err=True)
                registry = None
            for entry in registry.entries("command") if registry is not None else []:
                if entry.name not in self.commands:
                    found[entry.name] = entry.factory()
            self._plugin_commands = found
        return self._plugin_commands

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self.plugin_commands().get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.plugin_commands()})

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DmpoError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(err.exit_code)


@click.group(cls=DmpoGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(version=distribution.version(), package_name=distribution.NAME,
                      message="%(prog)s %(version)s (distribution %(package)s)")
def cli() -> None:
    """dmpo: RL fine-tuning of diffusion language models by Distribution Matching Policy Optimization.

    Components (backends, tasks, samplers, weighting schemes, objectives, rewards) come
    from plugins; `dmpo plugins` lists them.
    """


def _add_builtin_commands() -> None:
    from dmpo.cli import (commands_eval, commands_export, commands_frontier, commands_lm_eval, commands_new_plugin,
                          commands_plot, commands_plugins, commands_train)

    for command in (commands_plugins.plugins, commands_train.train, commands_eval.eval_cmd,
                    commands_eval.generate, commands_export.export, commands_plot.plot, commands_new_plugin.new_plugin,
                    commands_frontier.frontier, commands_lm_eval.lm_eval_cmd):
        cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    _add_builtin_commands()
    cli.main(args=argv, prog_name="dmpo", standalone_mode=True)


if __name__ == "__main__":
    main(sys.argv[1:])
