"""Entry point of the ``dmpo`` command: the command group and error handling.

Library code raises typed errors (:mod:`dmpo_core.errors`); here, and only here, they
become a one-line message on stderr and an exit code (2 for bad input, 1 otherwise).
"""

from __future__ import annotations

import sys

import click

from dmpo_core.errors import DmpoError


class DmpoGroup(click.Group):
    """A click group that reports dmpo's typed errors in one line."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DmpoError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(err.exit_code)


@click.group(cls=DmpoGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="dmpo")
def cli() -> None:
    """dmpo: RL fine-tuning of diffusion language models by Distribution Matching Policy Optimization.

    Components (backends, tasks, samplers, weighting schemes, objectives, rewards) come
    from plugins; `dmpo plugins` lists them.
    """


def _add_builtin_commands() -> None:
    from dmpo.cli import commands_eval, commands_plot, commands_plugins, commands_train

    for command in (commands_plugins.plugins, commands_train.train, commands_eval.eval_cmd,
                    commands_eval.generate, commands_plot.plot):
        cli.add_command(command)


def _add_plugin_commands() -> None:
    """Commands registered through the ``register_commands`` hook."""
    from dmpo_core.registry import get_registry

    try:
        registry = get_registry()
    except DmpoError as err:  # a broken plugin set must not hide `dmpo --help`
        click.echo(f"warning: {err}", err=True)
        return
    for entry in registry.entries("command"):
        if entry.name not in cli.commands:
            cli.add_command(entry.factory(), name=entry.name)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    _add_builtin_commands()
    _add_plugin_commands()
    cli.main(args=argv, prog_name="dmpo", standalone_mode=True)


if __name__ == "__main__":
    main(sys.argv[1:])
