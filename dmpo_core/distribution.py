"""The name this project is installed under, and its version read from the installed metadata.

The import packages (``dmpo_core``, ``dmpo.backends``, ``dmpo.tasks``, ``dmpo.cli``), the
``dmpo`` command and the entry-point group ``dmpo`` keep the short name; the distribution on
the package index is ``dllm-dmpo``, because ``dmpo`` there belongs to an unrelated project.
Anything that looks the distribution up by name (metadata, entry-point ownership) uses
:data:`NAME` from here, so the name is written once.
"""

from __future__ import annotations

import importlib.metadata
import re

NAME = "dllm-dmpo"

#: What :func:`version` answers for a checkout used without being installed (no metadata).
UNINSTALLED = "0+unknown"


def normalized(name: str) -> str:
    """``name`` as the package index compares names (PEP 503): lower case, runs of ``-_.`` as ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_own(name: str | None) -> bool:
    """Whether a distribution called ``name`` is this project (spelling variants included)."""
    return name is not None and normalized(name) == normalized(NAME)


def version() -> str:
    """The installed version of this project, from its package metadata (the one source of truth)."""
    try:
        return importlib.metadata.version(NAME)
    except importlib.metadata.PackageNotFoundError:
        return UNINSTALLED
