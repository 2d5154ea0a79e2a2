"""The built-in models' build scripts (``tools/make_builtin.py``, ``tools/make_countdown_tiny.py``)
imported for the tests (build scripts, not modules of the package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).resolve().parents[2] / "tools"
PATH = TOOLS / "make_builtin.py"
COUNTDOWN_PATH = TOOLS / "make_countdown_tiny.py"


def _load(path: Path) -> ModuleType:
    """Import the script once under the name ``dmpo_tools_<stem>``."""
    name = f"dmpo_tools_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None, path
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


make_builtin = _load(PATH)
make_countdown_tiny = _load(COUNTDOWN_PATH)
