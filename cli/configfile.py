"""Reading run configs: a YAML file, then ``--set dotted.key=value`` overrides (YAML-typed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from dmpo_core.config import set_dotted
from dmpo_core.errors import ConfigError


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (ConfigError naming the file when it is not one)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"{p}: no such file"], source="--config")
    try:
        data = yaml.safe_load(p.read_text()) or {}
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


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; read such strings as numbers."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in ".e") else int(value)
        except ValueError:
            return value
    return value


def apply_sets(data: dict[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings; values are parsed as YAML (``1e-4``, ``true``, ``[1, 2]``)."""
    problems = []
    for text in assignments:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            problems.append(f"{text!r}: expected KEY=VALUE, e.g. optim.lr=1e-4")
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        value = _number(value)
        try:
            set_dotted(data, key.strip(), value)
        except ConfigError as err:
            problems.extend(err.problems)
    if problems:
        raise ConfigError(problems, source="--set")
    return data
