"""Reading run configs: a YAML file, then ``--set dotted.key=value`` overrides (YAML-typed)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from dmpo_core.config import deep_merge, set_dotted
from dmpo_core.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2 floats: ``1e-4`` (no dot) is a number, where YAML 1.1 makes it a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


#: Most nodes a config may expand to, aliases followed: a real config has a few hundred; an
#: "alias bomb" (nested aliases that expand exponentially) is refused before it is built.
MAX_NODES = 100_000


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """A mapping whose repeated keys are an error (YAML would silently keep the last)."""
    seen: dict[Any, int] = {}
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (lines {seen[key]} and {key_node.start_mark.line + 1}); "
                "keep one", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes of ``node`` with every alias followed (memoised, so it costs the size of the graph)."""
    key = id(node)
    if key not in memo:
        memo[key] = 1  # a cycle counts once
        if isinstance(node, yaml.SequenceNode):
            memo[key] = 1 + sum(_expanded_size(child, memo) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            memo[key] = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    return memo[key]


def load_yaml(text: str) -> Any:
    """Parse YAML text (safe types only) with YAML 1.2 floats; used for config files and ``--set``.

    Repeated keys and documents that expand past :data:`MAX_NODES` nodes are errors.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_NODES:
            raise yaml.YAMLError(f"the document expands to more than {MAX_NODES:,} values through its aliases "
                                 "(an alias bomb?); write the values out")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (ConfigError naming the file when it is not one)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"{p}: no such file"], source="--config")
    try:
        data = load_yaml(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError([f"{p}: not UTF-8 text (byte {err.start}); save the file as UTF-8"],
                          source="--config") from err
    except yaml.YAMLError as err:
        raise ConfigError([f"{p}: not valid YAML ({_one_line(err)})"], source="--config") from err
    if not isinstance(data, dict):
        raise ConfigError([f"{p}: the top level must be a mapping of config keys"], source="--config")
    return data


def _one_line(err: yaml.YAMLError) -> str:
    """A YAML error in one line: its problem and where (the default text spans several lines)."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(err).split())[:300]


#: ``(section, name key, options key)`` of each component a config names: options belong to the
#: component they were written for.
COMPONENT_OPTIONS: tuple[tuple[str | None, str, str], ...] = (
    (None, "backend", "backend_options"), (None, "task", "task_options"), (None, "engine", "engine_options"),
    ("rollout", "sampler", "sampler_options"), ("weighting", "scheme", "options"), ("loss", "objective", "options"),
)


def layer(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """:func:`merge` ``override`` over ``base`` after :func:`drop_stale_options`."""
    return merge(drop_stale_options(base, override), override)


def drop_stale_options(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` without the options of a component that ``override`` replaces by another one
    without giving its options: ``--set weighting.scheme=grpo`` over a DMPO recipe must not
    keep the recipe's ``alpha``, nor ``--task countdown`` its Sudoku options."""
    base = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for section, name_key, options_key in COMPONENT_OPTIONS:
        old = base if section is None else base.get(section)
        new = override if section is None else override.get(section)
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue
        if name_key in new and new[name_key] != old.get(name_key) and options_key not in new:
            old.pop(options_key, None)
    return base


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of nested dicts (override wins)."""
    return deep_merge(base, override)


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
        except yaml.constructor.ConstructorError as err:  # a repeated key in a {...} value
            problems.append(f"{text!r}: {_one_line(err)}")
            continue
        except yaml.YAMLError as err:
            if "alias" in str(err):
                problems.append(f"{text!r}: {_one_line(err)}")
                continue
            value = raw
        try:
            set_dotted(data, key.strip(), value)
        except ConfigError as err:
            problems.extend(err.problems)
    if problems:
        raise ConfigError(problems, source="--set")
    return data
