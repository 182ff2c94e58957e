"""docs/commands.md and docs/settings.md say what the code says (they are generated from it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from newsletter.cli.docs import REGENERATE, missing_descriptions, pages, stale

ROOT = Path(__file__).resolve().parents[1]


def test_reference_pages_are_current() -> None:
    old = [str(path.relative_to(ROOT)) for path in stale(ROOT)]
    assert old == [], f"{', '.join(old)} out of date: run `{REGENERATE}` and commit the result"


def test_every_setting_has_a_description() -> None:
    """The settings page shows each key's description: a key without one is a blank row."""
    assert missing_descriptions() == [], "add description=... to these fields in core/settings.py"


def test_the_pages_hold_every_command_and_setting() -> None:
    commands, settings = (text for text in pages(ROOT).values())
    for name in ("slice send", "slice subscribers import", "slice bounces import", "slice demo"):
        assert f"## `{name}`" in commands
    assert "Usage: slice send [OPTIONS]" in commands
    for row in ("| `rate` | number | `10.0` |", "| `SLICE_SMTP_PASSWORD` |", "| `pubmed` |"):
        assert row in settings


def test_check_names_the_stale_page_and_the_command(tmp_path: Path) -> None:
    """`--check` exits 1 and says how to fix it; after regenerating it exits 0."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "settings.md").write_text("old\n")
    env = {**os.environ, "COLUMNS": "40"}  # the pages do not depend on the terminal

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "newsletter.cli.docs", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    checked = run("--check")
    assert checked.returncode == 1
    assert checked.stderr.splitlines() == [
        f"docs/commands.md is out of date: run `{REGENERATE}`",
        f"docs/settings.md is out of date: run `{REGENERATE}`",
    ]
    assert run().returncode == 0
    assert run("--check").returncode == 0
    for path, text in pages(ROOT).items():
        assert (tmp_path / "docs" / path.name).read_text() == text


def test_links_between_the_pages_lead_somewhere() -> None:
    """Every relative link in README.md and docs/*.md names a file of the repository."""
    link = re.compile(r"\]\(([^)#:]+)(?:#[^)]*)?\)")
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in link.findall(page.read_text(encoding="utf-8")):
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_no_module_cites_a_document_the_repository_lacks() -> None:
    cited = re.compile(r"\b([A-Z][A-Z_]+\.md)\b")
    missing = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "newsletter").rglob("*.py"))
        for name in cited.findall(path.read_text(encoding="utf-8"))
        if not (ROOT / name).exists() and not (ROOT / "docs" / name.lower()).exists()
    ]
    assert missing == []
