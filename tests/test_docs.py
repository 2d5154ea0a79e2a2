"""The documentation in docs/ stays true: the generated pages are fresh, every config key is
documented, every relative link and every file reference in code resolves, and each plugin
guide's example passes its suite (the quick start: tests/test_quickstart.py)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import make_docs  # noqa: E402

#: Pages that other work in progress writes; a link to one resolves once it lands.
PENDING: set[str] = set()

LINK = re.compile(r"\]\(([^)\s]+)\)")
FILE_REF = re.compile(r"(?<![\w/.-])((?:docs/[\w/.-]+|[A-Z][A-Z0-9_]*)\.md)\b")
VAGUE = re.compile(r"design (card|brief|doc)|the brief\b", re.I)


def tracked(*suffixes: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / f for f in out.split() if f.endswith(suffixes) and (ROOT / f).is_file()]


def markdown_files() -> list[Path]:
    return sorted({*ROOT.glob("docs/**/*.md"), ROOT / "README.md", *ROOT.glob("plugins/*/README.md")})


def test_generated_docs_are_fresh():
    stale = [str(p.relative_to(ROOT)) for p, text in make_docs.expected_files().items()
             if not p.exists() or p.read_text(encoding="utf-8") != text]
    assert not stale, f"stale: {stale}; run: python tools/make_docs.py"


def test_every_config_key_is_in_the_reference():
    from dmpo_core.training.config import TrainConfig

    text = (ROOT / "docs" / "configuration.md").read_text()

    def keys(cls, prefix=""):
        import typing

        hints = typing.get_type_hints(cls)
        for f in attrs.fields(cls):
            yield prefix + f.name
            if attrs.has(hints[f.name]):
                yield from keys(hints[f.name], f"{prefix}{f.name}.")

    missing = [k for k in keys(TrainConfig) if f"| `{k}` |" not in text]
    assert not missing and len(list(keys(TrainConfig))) > 40


@attrs.frozen(kw_only=True)
class _Section:
    documented: int = 1
    """Has one."""
    bare: int = 2


@attrs.frozen(kw_only=True)
class _Config:
    section: _Section = attrs.field(factory=_Section)
    """A section."""
    lonely: str = "x"


def test_a_key_without_a_docstring_fails_the_generator():
    with pytest.raises(ValueError, match=r"without a docstring: lonely, section\.bare"):
        make_docs.sections(_Config)


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
        if not path.exists() and rel not in PENDING:
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_every_file_reference_in_code_and_docs_points_into_the_repository():
    bad = []
    for path in tracked(".py", ".md", ".toml", ".yaml", ".yml", ".cfg", ".txt", "Makefile"):
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        rel = path.relative_to(ROOT)
        for n, line in enumerate(text.splitlines(), 1):
            if VAGUE.search(line):
                bad.append(f"{rel}:{n}: {VAGUE.search(line).group(0)!r} names no file")
            for ref in FILE_REF.findall(line):
                if not any((base / ref).exists() for base in (path.parent, ROOT)) and ref not in PENDING:
                    bad.append(f"{rel}:{n}: {ref}")
    assert not bad, "references to documents that are not in the repository:\n" + "\n".join(bad)


def _guide_module(kind: str, tmp_path: Path):
    text = (ROOT / "docs" / "plugins" / f"{kind}.md").read_text()
    match = make_docs.MARKER.search(text)
    assert match and match.group(2) == kind, f"docs/plugins/{kind}.md has no generated example"
    path = tmp_path / f"guide_{kind}.py"
    path.write_text(match.group(4))
    spec = importlib.util.spec_from_file_location(f"guide_{kind}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module, match.group(3)


@pytest.mark.parametrize("kind", ["backend", "sampler", "weighting", "objective", "reward", "task", "engine",
                                  "command"])
def test_each_plugin_guides_example_passes_its_suite(kind, tmp_path):
    from dmpo_core.testing import plugin_kit as kit

    module, name = _guide_module(kind, tmp_path)
    if kind == "backend":
        module.init_checkpoint(str(tmp_path / "ckpt"))
        kit.check_backend(module, name, tmp_path / "ckpt", "protocol")
        kit.check_backend(module, name, tmp_path / "ckpt", "save_load_round_trip")
    elif kind == "weighting":
        kit.check_weighting_law("advantages_sum_to_zero_per_group", module, name)
        kit.check_weighting(module, name)
    else:
        getattr(kit, f"check_{kind}")(module, name)
