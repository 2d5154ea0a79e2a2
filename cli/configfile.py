"""Reading run configs: a YAML file, then ``--set dotted.key=value`` overrides (YAML-typed)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from dmpo_core.config import set_dotted
from dmpo_core.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2 floats: ``1e-4`` (no dot) is a number, where YAML 1.1 makes it a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text (safe types only) with YAML 1.2 floats; used for config files and ``--set``."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (ConfigError naming the file when it is not one)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"{p}: no such file"], source="--config")
    try:
        data = load_yaml(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError([f"{p}: not valid YAML ({str(err).splitlines()[0]})"], source="--config") from err
    if not isinstance(data, dict):
        raise ConfigError([f"{p}: the top level must be a mapping of config keys"], source="--config")
    return data


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of nested dicts (override wins)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_sets(data: dict[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings; values are parsed as YAML (``1e-4``, ``true``, ``[1, 2]``)."""
    problems = []
    for text in assignments:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            problems.append(f"{text!r}: expected KEY=VALUE, e.g. optim.lr=1e-4")
            continue
        try:
            value = load_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        try:
            set_dotted(data, key.strip(), value)
        except ConfigError as err:
            problems.extend(err.problems)
    if problems:
        raise ConfigError(problems, source="--set")
    return data
