"""``import dmpo_core`` stays light: torch, attrs and pluggy only (docs/contributing.md, layout).

Checked in a fresh interpreter (this test process has imported everything already), once
for the core modules and once more after importing every module of ``dmpo_core`` except
``dmpo_core.testing``, which imports hypothesis on purpose.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("transformers", "datasets", "click", "deepspeed", "hypothesis")

SCRIPT = """
import importlib, json, pkgutil, sys
heavy = {heavy!r}
import dmpo_core, dmpo_core.objective, dmpo_core.registry, dmpo_core.builtin, dmpo_core.contracts
import dmpo_core.data, dmpo_core.checks, dmpo_core.errors, dmpo_core.hookspecs
core = [m for m in heavy if m in sys.modules]
names, failed = [], {{}}
def walk(package):  # pkgutil.walk_packages would import dmpo_core.testing to look inside it
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name == "dmpo_core.testing":
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception as err:
            failed[info.name] = repr(err)
            continue
        names.append(info.name)
        if info.ispkg:
            walk(module)
walk(dmpo_core)
print(json.dumps({{"core": core, "modules": names, "failed": failed,
                  "all": [m for m in heavy if m in sys.modules]}}))
"""


@pytest.fixture(scope="module")
def report() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(heavy=HEAVY)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_dmpo_core_imports_no_heavy_or_test_dependency(report):
    assert report["core"] == [], f"import dmpo_core pulled in {report['core']}"


def test_no_dmpo_core_module_outside_testing_imports_a_heavy_dependency(report):
    assert "dmpo_core.objective.weights" in report["modules"]
    assert report["failed"] == {}, f"dmpo_core modules failed to import: {report['failed']}"
    assert report["all"] == [], f"dmpo_core modules pulled in {report['all']}"
