"""What a component's options are: names, types, defaults and help, read off its options class.

Options classes are frozen ``attrs`` classes with a docstring under each field (docs/contributing.md).
Python keeps no such docstrings at run time, so :func:`describe` reads them from the class's
source; ``attrs.field(metadata={"help": ...})`` wins where given (classes built at run time
have no source). ``dmpo plugins NAME`` prints the result, and the property strategies of
:mod:`dmpo_core.testing` draw options from the same fields.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Mapping
from typing import Any

import attrs

from dmpo_core.config import field_types


@attrs.frozen(kw_only=True)
class OptionDoc:
    """One option of a component."""

    name: str
    type: str
    """The annotation, as written (``float``, ``int | None``, ``Literal['a', 'b']`` ...)."""
    default: Any
    """The default value; :data:`REQUIRED` when the option has none."""
    help: str
    """First paragraph of the field's docstring (or its ``metadata["help"]``)."""


REQUIRED = "(required)"


def field_docstrings(cls: type) -> dict[str, str]:
    """``field name -> docstring`` of the string literal under each annotated field of ``cls``
    and of its base classes (the nearest class wins); {} when no source is available."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        tree = ast.parse(source)
        node = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
        if node is None:
            continue
        body = node.body
        for here, after in zip(body, body[1:]):
            if (isinstance(here, ast.AnnAssign) and isinstance(here.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                out[here.target.id] = inspect.cleandoc(after.value.value)
    return out


def _type_name(tp: Any, fallback: Any) -> str:
    if tp is None:
        return str(fallback) if fallback is not None else "any"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def describe(cls: type, *, fixed: Mapping[str, Any] | None = None) -> list[OptionDoc]:
    """The settable options of the attrs class ``cls`` (``fixed`` ones left out), in field order."""
    docs = field_docstrings(cls)
    hints = field_types(cls)
    out = []
    for field in attrs.fields(cls):
        if not field.init or field.name in (fixed or {}):
            continue
        if field.default is attrs.NOTHING:
            default: Any = REQUIRED
        elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            default = field.default.factory() if not field.default.takes_self else "(computed)"
        else:
            default = field.default
        text = field.metadata.get("help") or docs.get(field.name, "")
        out.append(OptionDoc(name=field.name, type=_type_name(hints.get(field.name), field.type), default=default,
                             help=text.split("\n\n")[0].replace("\n", " ")))
    return out
