"""Package layout only (metadata lives in pyproject.toml).

The folders ``backends/``, ``tasks/`` and ``cli/`` have names that would collide in
site-packages, so they install under the ``dmpo`` prefix: ``dmpo.backends``,
``dmpo.tasks`` and ``dmpo.cli``. ``dmpo_core`` installs under its own name.
"""

from setuptools import find_packages, setup

MAPPED = {"dmpo.backends": "backends", "dmpo.tasks": "tasks", "dmpo.cli": "cli"}


def _mapped_packages(prefix: str, folder: str) -> list[str]:
    return [prefix] + [f"{prefix}.{name}" for name in find_packages(folder)]


packages = find_packages(include=["dmpo_core", "dmpo_core.*"])
for prefix, folder in MAPPED.items():
    packages += _mapped_packages(prefix, folder)

setup(
    packages=packages,
    package_dir={"dmpo_core": "dmpo_core", **MAPPED},
    package_data={"dmpo.backends": ["builtin_models/*/*"], "dmpo.tasks": ["templates/*"]},
    include_package_data=False,
)
