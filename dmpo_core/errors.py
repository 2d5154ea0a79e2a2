"""Typed errors of dmpo, all in one place.

The library raises these; only ``dmpo.cli`` turns them into exit codes and one-line
messages. Every message names what was wrong, the value seen and the fix, so a user
never has to read a stack trace to act on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class DmpoError(Exception):
    """Base class of every error dmpo raises on purpose."""

    exit_code: int = 1


class InvalidArgumentError(DmpoError, ValueError):
    """An argument has a bad value or shape.

    Args:
        name: the argument's name, as the caller wrote it.
        value: the offending value (shown with ``repr``, shortened).
        fix: one sentence telling the caller what to pass instead.
    """

    exit_code = 2

    def __init__(self, name: str, value: object, fix: str) -> None:
        self.name = name
        self.value = value
        self.fix = fix
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{name}={shown}: {fix}")


class ShapeError(InvalidArgumentError):
    """A tensor argument has the wrong shape or dtype."""


class ConfigError(DmpoError, ValueError):
    """A configuration has one or more invalid fields; all problems are reported at once."""

    exit_code = 2

    def __init__(self, problems: Sequence[str], source: str = "config") -> None:
        self.problems = list(problems)
        self.source = source
        joined = "; ".join(self.problems)
        super().__init__(f"invalid {source}: {joined}")


class RegistryError(DmpoError, LookupError):
    """Base class of plugin-registry errors."""

    exit_code = 2


class UnknownNameError(RegistryError):
    """A component was looked up by a name that nothing registered."""

    def __init__(self, kind: str, name: str, available: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.available = sorted(available)
        names = ", ".join(self.available) or "(none registered)"
        super().__init__(f"unknown {kind} {name!r}; available: {names}")


class DuplicateNameError(RegistryError):
    """Two plugins registered a component of the same kind under the same name."""

    def __init__(self, kind: str, name: str, first: str, second: str) -> None:
        self.kind = kind
        self.name = name
        self.plugins = (first, second)
        super().__init__(
            f"{kind} {name!r} is registered twice: by plugin {first!r} and by plugin "
            f"{second!r}; uninstall one of them or restrict loading with DMPO_PLUGINS"
        )


class PluginLoadError(DmpoError):
    """A plugin could not be imported or registered (reported, never fatal to others)."""

    def __init__(self, plugin: str, reason: str) -> None:
        self.plugin = plugin
        self.reason = reason
        super().__init__(f"plugin {plugin!r} failed to load: {reason}")


class CheckpointError(DmpoError):
    """A checkpoint folder or file is missing, malformed or inconsistent."""

    exit_code = 2

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class DataError(DmpoError):
    """A data file is missing, unreadable or lacks a needed column."""

    exit_code = 2

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class TrainingError(DmpoError):
    """Training cannot go on (for example, too many non-finite losses in a row)."""
