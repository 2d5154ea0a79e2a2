"""`--help` and config errors answer without importing torch or transformers (they took
seconds before): checked by what a fresh interpreter has imported, not by a timer."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from dmpo.cli import main as m
m._add_builtin_commands()
try:
    m.cli.main({args!r}, prog_name="dmpo", standalone_mode=True)
except SystemExit as done:
    code = done.code
print("EXIT", code, "torch" in sys.modules, "transformers" in sys.modules)
"""


@pytest.mark.parametrize("args", [
    ["train", "--help"], ["eval", "--help"], ["generate", "--help"], ["plugins", "--help"], ["plot", "--help"],
    ["new-plugin", "--help"],
    ["export", "--help"],
    ["train", "--set", "optim.lr=-1"], ["train", "--set", "nonsense=1", "--output-dir", "x"],
])
def test_help_and_config_errors_import_neither_torch_nor_transformers(args):
    done = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                          timeout=120)
    last = done.stdout.strip().splitlines()[-1]
    code = 0 if "--help" in args else 2
    assert last == f"EXIT {code} False False", (done.stdout, done.stderr)
