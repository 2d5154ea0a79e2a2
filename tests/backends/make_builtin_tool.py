"""``tools/make_builtin.py`` imported for the tests (a build script, not a module of the package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PATH = Path(__file__).resolve().parents[2] / "tools" / "make_builtin.py"


def _load() -> ModuleType:
    """Import the script once under the name ``dmpo_tools_make_builtin``."""
    name = "dmpo_tools_make_builtin"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PATH)
        assert spec is not None and spec.loader is not None, PATH
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


make_builtin = _load()
