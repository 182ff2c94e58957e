"""What `pip install` puts on a user's machine: every package, and the default templates."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "newsletter").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found | {"newsletter.templates"} == listed


def test_the_default_templates_are_found_where_the_package_is_installed() -> None:
    from newsletter.issue.templating import PACKAGE_TEMPLATES

    assert PACKAGE_TEMPLATES.resolve() == (ROOT / "templates").resolve()
    assert (PACKAGE_TEMPLATES / "email" / "issue.mjml").is_file()


@pytest.mark.slow
def test_the_wheel_carries_the_templates_and_demo_data(tmp_path: Path) -> None:
    pytest.importorskip("setuptools", minversion="69")
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*build, "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("slice_newsletter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {p.relative_to(ROOT).as_posix() for p in (ROOT / "templates").rglob("*.*")}
    templates = {t for t in templates if "__pycache__" not in t}
    assert {f"newsletter/{t}" for t in templates} <= names
    assert "newsletter/data/demo/papers.jsonl" in names
    assert "newsletter/py.typed" in names


def test_dkimpy_is_only_a_test_dependency() -> None:
    """The send signs with `cryptography`; dkimpy only verifies in the tests (dev extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {
            r.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip() for r in requirements
        }

    assert "dkimpy" not in names(project["dependencies"])
    assert "dkimpy" in names(project["optional-dependencies"]["dev"])
    for extra, listed in project["optional-dependencies"].items():
        assert extra == "dev" or "dkimpy" not in names(listed), extra
    importing = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "newsletter").rglob("*.py")
        if any(
            line.strip().startswith(("import dkim", "from dkim "))
            for line in p.read_text(encoding="utf-8").splitlines()
        )
    ]
    assert importing == []
