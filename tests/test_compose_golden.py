"""The rendered files of one fixed issue, compared with reviewed copies.

After an intended change to the templates or rendering, regenerate them with
``.venv/bin/python -m tests.regen_golden`` and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.regen_golden import FILES, GOLDEN, build


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return build(tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("name", FILES)
def test_rendered_file_matches_golden(rendered: dict[str, str], name: str) -> None:
    golden = GOLDEN / name
    assert golden.is_file(), f"{golden} is missing: run `python -m tests.regen_golden`"
    assert rendered[name] == golden.read_text(encoding="utf-8"), (
        f"{name} differs from {golden}; if the change is intended, run "
        "`python -m tests.regen_golden` and review the diff"
    )


def test_golden_issue_reads_like_the_weekly(rendered: dict[str, str]) -> None:
    text = rendered["issue.txt"]
    order = [
        "Radiology AI Weekly · Issue #1 · Jun 1, 2026",
        "__SLICE_GREETING__",
        "Which of these do you expect in your reading room first?",
        "Here's what you need to know this week:",
        "Plus: 1 new dataset, 1 cleared device & 3 new papers",
        "A FOUNDATION MODEL READS CHEST X-RAYS WITH 1% OF THE LABELS",
        "Why it matters:",
        "The details:",
        "Key takeaway:",
        "NEW DATASETS",
        "CLEARED DEVICES",
        "MORE PAPERS THIS WEEK",
        "FROM THE EDITOR",
        "Unsubscribe: __SLICE_UNSUBSCRIBE_URL__",
    ]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions)
    assert Path(GOLDEN / "email.html").stat().st_size < 80 * 1024
