"""One definition of each default, and a README layout that names the modules that exist (issue 10)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile

from artdet.detector.config import ARCH_NAMES, STRATEGIES
from tests.conftest import ROOT

SOURCES = [p for folder in ("detector", "server", "tools") for p in (ROOT / folder).rglob("*.py")]


def _lines(pattern: str) -> list[str]:
    found = []
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(ROOT)}:{number}")
    return found


DEFAULTS = r"^(SCORE_THRESHOLD|EXPORT_SCORE_THRESHOLD|DETECTIONS_PER_IMAGE|STRATEGIES|NAMED_WEIGHTS)\s*="


def test_each_default_is_defined_once():
    assert _lines(DEFAULTS) == [f"detector/config.py:{n}" for n in _numbers("detector/config.py", DEFAULTS)]
    assert len(_lines(DEFAULTS)) == 5
    # no literal copy of a default beside the schema's (argparse defaults, keyword defaults, request fields)
    assert _lines(r"default=(0\.5|0\.05|100)\b|(threshold|max_detections)(: \w+)? ?= ?(0\.5|0\.05|100)\b") == []
    # the architecture names and the strategy list are written out in the schema only
    for name in ARCH_NAMES:
        assert [place for place in _lines(f'"{name}"') if place.startswith(("detector/", "server/"))] \
            == [f"detector/config.py:{n}" for n in _numbers("detector/config.py", f'"{name}"')]
    assert _lines(r'"auto",\s*"head-only"') == [f"detector/config.py:{n}"
                                                 for n in _numbers("detector/config.py", "^STRATEGIES =")]
    assert set(STRATEGIES) == {"auto", "head-only", "two-stage", "full"}


def _numbers(relative: str, pattern: str) -> list[int]:
    lines = (ROOT / relative).read_text().splitlines()
    return [n for n, line in enumerate(lines, start=1) if re.search(pattern, line)]


def test_the_readmes_layout_names_every_engine_and_server_module_and_nothing_else():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("\n## ", readme.index("## Layout") + 1)]
    named = set(re.findall(r"`(?:[\w/]+/)?(\w+\.py)`", layout))
    engine = {p.name for p in (ROOT / "detector").glob("*.py") if p.name not in ("__init__.py", "cli.py")}
    assert engine <= named, f"modules the layout does not describe: {sorted(engine - named)}"
    existing = {p.name for folder in ("detector", "server", "tools") for p in (ROOT / folder).rglob("*.py")}
    assert named <= existing, f"the layout names modules that do not exist: {sorted(named - existing)}"


def test_the_installed_code_lives_under_one_import_name(tmp_path):
    """Issue 11 item 11: a wheel holds `artdet` and its metadata only, no top-level `detector`, `server`, `tools`."""
    source = tmp_path / "source"  # setuptools writes build/ beside the sources: a copy keeps the checkout clean
    for folder in ("detector", "server", "tools", "proto"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("artdet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"artdet", wheel.name.split("-py")[0] + ".dist-info"}
    for module in ("artdet/detector/trainer.py", "artdet/server/app.py", "artdet/tools/cli.py",
                   "artdet/tools/bench/run.py", "artdet/v1/artdet_pb2.py", "artdet/server/console/app.py",
                   "artdet/server/console/static/index.html", "artdet/server/console/static/console.js"):
        assert module in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "artdet = artdet.tools.cli:main" in entry_points


def test_the_code_imports_its_own_modules_by_the_installed_name():
    # `import detector...` would work from the repo root only, and load a second copy of the module beside artdet's
    bare = r"^\s*(from|import) (detector|server|tools)\b|[\"']-m[\"'], [\"'](detector|server|tools)\."
    assert _lines(bare) == []
    tests = [p for p in (ROOT / "tests").glob("*.py")]
    assert [p.name for p in tests if re.search(bare, p.read_text(), re.M)] == []
