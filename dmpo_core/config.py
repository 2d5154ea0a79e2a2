"""Building frozen attrs configs from plain dicts, reporting every problem at once.

Configs are nested frozen ``attrs`` classes whose fields carry validators. Users write
them as YAML or ``--set section.key=value``; :func:`build_config` turns the parsed dict
into the class and, instead of stopping at the first bad field, collects every problem
(unknown keys, wrong types, failed validators, failed cross-field checks) into one
:class:`~dmpo_core.errors.ConfigError`, before any model is loaded.

Validators in this module raise ``ValueError("<fix>")``; the builder prefixes the dotted
field name and the value.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs

from dmpo_core.errors import ConfigError, InvalidArgumentError

T = TypeVar("T")


# ---------------------------------------------------------------------------- validators


def _validator(check: Callable[[Any], bool], fix: str) -> Callable[[Any, attrs.Attribute, Any], None]:
    def validate(_inst: Any, _attr: attrs.Attribute, value: Any) -> None:
        if not check(value):
            raise ValueError(fix)

    return validate


def _finite(v: Any) -> bool:
    return math.isfinite(v) if isinstance(v, float) else True


def positive() -> Callable:
    """A finite value > 0 (``inf`` and ``nan`` are no settings)."""
    return _validator(lambda v: _finite(v) and v > 0, "must be a finite number > 0")


def non_negative() -> Callable:
    """A finite value >= 0."""
    return _validator(lambda v: _finite(v) and v >= 0, "must be a finite number >= 0")


def at_least(low: float) -> Callable:
    """A finite value >= ``low``."""
    return _validator(lambda v: _finite(v) and v >= low, f"must be a finite number >= {low}")


def in_range(low: float, high: float, *, low_open: bool = False) -> Callable:
    """``low <= value <= high`` (``low < value`` when ``low_open``)."""
    if low_open:
        return _validator(lambda v: low < v <= high, f"must be in ({low}, {high}]")
    return _validator(lambda v: low <= v <= high, f"must be in [{low}, {high}]")


def one_of(*choices: Any) -> Callable:
    """Value is one of ``choices``."""
    return _validator(lambda v: v in choices, f"choose one of {', '.join(map(str, choices))}")


# ---------------------------------------------------------------------------- builder


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``(the type without None, whether None is allowed)``; a union of several types stays a
    union (checked loosely), but ``None`` is still accepted when it is one of them."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        return (args[0] if len(args) == 1 else tp), optional
    return tp, False


def _coerce(value: Any, tp: Any) -> Any:
    """Check/convert ``value`` to the field type ``tp`` (ints are accepted as floats)."""
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ValueError("must not be empty")
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError("must be true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError("must be an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError("must be a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError("must be a string")
    if origin in (dict, Mapping) or tp is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise ValueError("must be a mapping")
    if origin in (tuple, list) or tp in (tuple, list):
        if isinstance(value, (list, tuple)):
            return tuple(value)
        raise ValueError("must be a list")
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ValueError(f"choose one of {', '.join(map(str, typing.get_args(tp)))}")
    return value


def build_config(cls: type[T], data: Mapping[str, Any] | None, *, source: str = "config", prefix: str = "") -> T:
    """Build ``cls`` (a frozen attrs class, possibly nested) from ``data``.

    ``prefix`` (e.g. ``"weighting.options."``) is put before every field name in the
    messages, so a component's options are reported with their full dotted path.

    Raises:
        ConfigError: listing every problem found, each as ``dotted.key=value: fix``.
    """
    problems: list[str] = []
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError([f"{prefix.rstrip('.') or 'config'}={data!r}: must be a mapping of option names to values"],
                          source=source)
    result = _build(cls, dict(data or {}), prefix, problems)
    if problems or result is None:
        raise ConfigError(problems, source=source)
    return result


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of an attrs class (``Any`` for names only a type checker sees)."""
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation behind TYPE_CHECKING: check that field loosely
        return {}


def _build(cls: type[T], data: dict[str, Any], prefix: str, problems: list[str]) -> T | None:
    hints = field_types(cls)
    fields = {f.name: f for f in attrs.fields(cls)}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            problems.append(f"{prefix}{key}: unknown key; known keys here: {known}")
    kwargs: dict[str, Any] = {}
    n_before = len(problems)
    for name, field in fields.items():
        dotted = f"{prefix}{name}"
        tp = hints.get(name, Any)
        if name not in data:
            if attrs.has(tp) and field.default is not attrs.NOTHING:
                sub = _build(tp, {}, dotted + ".", problems)
                if sub is not None:
                    kwargs[name] = sub
            continue
        value = data[name]
        if attrs.has(tp):
            if not isinstance(value, Mapping):
                problems.append(f"{dotted}={value!r}: must be a mapping of {tp.__name__} fields")
                continue
            sub = _build(tp, dict(value), dotted + ".", problems)
            if sub is not None:
                kwargs[name] = sub
            continue
        try:
            value = _coerce(value, tp)
            if field.validator is not None:
                field.validator(None, field, value)
        except (ValueError, TypeError) as err:
            problems.append(f"{dotted}={value!r}: {err}")
            continue
        kwargs[name] = value
    if len(problems) > n_before:
        return None
    try:
        return cls(**kwargs)
    except ConfigError as err:
        problems.extend(f"{prefix}{p}" if prefix else p for p in err.problems)
    except InvalidArgumentError as err:  # "name=value: fix" of one field: put the path before it
        problems.append(f"{prefix}{err}")
    except (ValueError, TypeError) as err:
        problems.append(f"{prefix.rstrip('.') or cls.__name__}: {err}")
    return None


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config (for YAML/JSON files)."""
    return attrs.asdict(config, recurse=True)


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for ``dotted = 'a.b'``, creating sections."""
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError([f"{dotted}: {part} is not a section"], source="--set")
        node = nxt
    node[parts[-1]] = value


def cross_checks(checks: list[tuple[bool, str]], source: str = "config") -> None:
    """Raise one ConfigError for every failed ``(ok, message)`` (use in ``__attrs_post_init__``)."""
    problems = [msg for ok, msg in checks if not ok]
    if problems:
        raise ConfigError(problems, source=source)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` merged into a copy of ``base``, nested mappings key by key (override wins)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
