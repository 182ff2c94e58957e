"""A big week: compose reads in full only the papers that can still reach the issue, and
chooses what scoring every candidate chooses, even after the store's IDF has moved since
the week was scored; --explain still scores every candidate."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import Result

from newsletter.core.config import load_settings
from newsletter.core.store import Store
from newsletter.issue import relevance
from newsletter.issue.compose import compose_issue
from newsletter.issue.window import week_window
from tests.composedata import add_papers

WEEK = "2026-W22"  # 25 to 31 May 2026
NOW = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)

PROFILE = """
[newsletter]
name = "Radiology AI Weekly"
[web]
base_url = "https://weekly.example.org"
[compose]
max_papers = 6
per_source_cap = 3
[profile]
recency_weight = 0.1
exclude = ["veterinary"]
required = ["radiolog*", "ct", "mri", "mammogra*", "ultrasound"]
min_score = 1.5
[profile.terms]
"radiology" = 2.0
"deep learning" = 1.5
"foundation model" = 1.5
"segmentation" = 1.0
"detection" = 0.8
"ct" = 1.0
"mri" = 1.0
"mammography" = 1.2
"""

MODALITY = ["CT", "MRI", "mammography", "ultrasound", "protein folding", "robot navigation"]
TASK = ["segmentation", "detection", "triage", "report writing"]
METHOD = ["deep learning", "a foundation model", "radiomics", "gradient boosting"]
SOURCES = ["arxiv", "pubmed", "medrxiv"]


def _week_of_papers(store: Store) -> int:
    """240 papers in the week from a small lexicon, after 8 weeks of older ones (the IDF)."""
    papers: list[dict[str, Any]] = []
    combos = list(itertools.product(MODALITY, TASK, METHOD))
    for n in range(240):
        modality, task, method = combos[n % len(combos)]
        extra = ["", " Radiology residents read every case.", " A veterinary cohort."][n % 3]
        papers.append(
            {
                "title": f"{modality} {task} with {method}, cohort {n}",
                "abstract": f"We study {task} on {modality} using {method}.{extra}",
                "authors": ["Ana Silva"],
                "source": SOURCES[n % 3],
                "kind": "preprint",
                "published": date(2026, 5, 25) + timedelta(days=n % 7),
                "first_seen": datetime(2026, 5, 28, tzinfo=UTC),
            }
        )
    older = [
        {**paper, "title": f"Earlier: {paper['title']}", "published": date(2026, 4, 1) + timedelta(days=n % 50)}
        for n, paper in enumerate(papers * 3)
    ]  # fmt: skip
    add_papers(store, older)
    add_papers(store, papers)
    return 240


def test_a_big_week_reads_few_papers_in_full_and_chooses_as_a_full_scoring(
    project: Path, environ: dict[str, str], run_cli: Callable[..., Result]
) -> None:
    (project / "slice.toml").write_text(PROFILE, encoding="utf-8")
    settings = load_settings(config=project / "slice.toml", environ=environ)
    window = week_window(WEEK)
    with Store.open(settings.database_url) as store:
        in_week = _week_of_papers(store)
        relevance.refresh_store(settings, store)  # the week is scored as it arrives
        later = [
            {"title": f"Protein folding with gradient boosting, run {n}", "abstract": "Proteins.",
             "authors": ["Ben Okafor"], "source": "arxiv", "kind": "preprint",
             "published": date(2026, 6, 2), "first_seen": datetime(2026, 6, 2, tzinfo=UTC)}
            for n in range(300)
        ]  # fmt: skip
        add_papers(store, later)  # then the store doubles: every term is rarer than it was
        quick = compose_issue(settings, store, window=window, now=NOW, reselect=True)
        full = compose_issue(settings, store, window=window, now=NOW, reselect=True, explain=True)
        # the editor pins a paper from the bottom and removes the top one: the same again
        edits: dict[str, Any] = {
            "pins": [quick.selection.ranked[-1].paper_id, quick.selection.ranked[-2].paper_id],
            "excludes": [quick.issue.papers[0].id],
        }
        edited = [
            compose_issue(settings, store, window=window, now=NOW, reselect=True, **edits),
            compose_issue(
                settings, store, window=window, now=NOW, reselect=True, explain=True, **edits
            ),
        ]
        # three pins from the bottom, all of one source: they fill that source's cap
        # wherever they rank, so the settled papers of that source cannot be chosen
        top_source = quick.selection.ranked[0].paper.source
        bottom = [s for s in reversed(full.selection.ranked) if s.paper.source == top_source]
        capped: dict[str, Any] = {"pins": [s.paper_id for s in bottom[:3]]}
        capped_issues = [
            compose_issue(settings, store, window=window, now=NOW, reselect=True, **capped),
            compose_issue(
                settings, store, window=window, now=NOW, reselect=True, explain=True, **capped
            ),
        ]

    assert [p.id for p in quick.issue.papers] == [p.id for p in full.issue.papers]
    assert len(quick.issue.papers) == 6
    # the runners-up the editor's history records are the same too
    head = len(quick.selection.chosen) + 20
    assert [(s.paper_id, s.status) for s in quick.selection.ranked[:head]] == [
        (s.paper_id, s.status) for s in full.selection.ranked[:head]
    ]
    assert len(quick.selection.ranked) == len(full.selection.ranked) == in_week
    assert quick.selection.scored_in_full < in_week / 2
    assert full.selection.scored_in_full == in_week
    pinned, excluded = edits["pins"], edits["excludes"]
    assert [p.id for p in edited[0].issue.papers] == [p.id for p in edited[1].issue.papers]
    assert set(pinned) <= {p.id for p in edited[0].issue.papers}
    assert excluded[0] not in {p.id for p in edited[0].issue.papers}
    quick_capped, full_capped = ([p.id for p in c.issue.papers] for c in capped_issues)
    assert quick_capped == full_capped and len(quick_capped) == 6
    assert [s.paper.source for s in capped_issues[0].selection.chosen].count(top_source) == 3

    # --explain lists every candidate scored in full, each with its reason
    result = run_cli(
        "compose", "--week", WEEK, "--reselect", "--explain", env={**environ, "COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    assert f"{in_week} candidates" in result.stdout
    assert "profile excludes" in result.stdout and "as stored" not in result.stdout
