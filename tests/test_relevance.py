"""The relevance floor: a thin week gives a short issue, not off-topic padding; candidates are
the papers published in the window; the archive lists on-topic papers; IDF is the store's."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import Result

from newsletter.core.config import load_settings
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue import relevance
from newsletter.issue.candidates import load_candidates
from newsletter.issue.compose import compose_issue
from newsletter.issue.scoring import Profile
from newsletter.issue.select import SelectOptions, select
from newsletter.issue.window import week_window
from newsletter.web import create_app
from tests.composedata import add_papers
from tests.support.liveserver import LiveServer

WEEK = "2026-W22"  # 25 to 31 May 2026
NOW = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)
IN_WEEK = date(2026, 5, 27)

# this repository's profile, as slice.toml writes it
PROFILE = """
[newsletter]
name = "Radiology AI Weekly"
[web]
base_url = "https://weekly.example.org"
[compose]
max_papers = 6
per_source_cap = 6
[profile]
exclude = ["veterinary"]
required = ["radiolog*", "medical imag*", "ct", "computed tomography", "mri", "x-ray",
            "radiograph*", "mammogra*", "ultrasound", "pet"]
min_score = 1.5
[profile.terms]
"radiology" = 2.0
"medical imaging" = 2.0
"deep learning" = 1.5
"machine learning" = 1.0
"artificial intelligence" = 1.0
"foundation model" = 1.5
"large language model" = 1.2
"segmentation" = 1.0
"detection" = 0.8
"ct" = 1.0
"mri" = 1.0
"chest radiograph" = 1.2
"mammography" = 1.2
"""

RADIOLOGY = [
    (
        "Deep learning detection of intracranial haemorrhage on non-contrast head CT",
        "A deep learning model trained on 25 000 head CT examinations detected haemorrhage with "
        "an AUC of 0.97 in an external validation cohort read by radiologists.",
    ),
    (
        "A foundation model for chest radiograph interpretation in the emergency department",
        "We pretrained a foundation model on 800 000 chest radiographs and fine-tuned it for "
        "14 findings; radiology residents improved with its assistance.",
    ),
    (
        "Prostate MRI lesion segmentation with few labels: a multicentre study",
        "Segmentation of prostate lesions on MRI from five centres with a self-supervised deep "
        "learning model reduced reading time for radiologists.",
    ),
]
GENERAL_AI = [
    (
        "Scaling laws for large language model reasoning on mathematics benchmarks",
        "We study how a large language model's accuracy on grade-school mathematics grows with "
        "parameters and data, using machine learning ablations.",
    ),
    (
        "Deep learning for yeast cell segmentation in fluorescence microscopy",
        "A deep learning segmentation network counts budding yeast cells in time-lapse "
        "fluorescence microscopy; deep learning beats classical thresholding.",
    ),
    (
        "Reinforcement learning agents for warehouse robotics",
        "Machine learning and artificial intelligence let warehouse robots plan paths; our deep "
        "learning policy halves collisions.",
    ),
]


def _paper(title: str, abstract: str, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "title": title,
        "abstract": abstract,
        "authors": ["Ana Silva"],
        "source": "arxiv",
        "kind": "preprint",
        "published": IN_WEEK,
        "first_seen": datetime(2026, 5, 28, tzinfo=UTC),
    }
    return {**values, **fields}


def _settings(project: Path, environ: dict[str, str]) -> Settings:
    (project / "slice.toml").write_text(PROFILE, encoding="utf-8")
    return load_settings(config=project / "slice.toml", environ=environ)


def _thin_week(store: Store) -> dict[str, int]:
    papers = [_paper(t, a) for t, a in RADIOLOGY]
    for i in range(10):  # 30 general-AI papers
        for title, abstract in GENERAL_AI:
            papers.append(_paper(f"{title} ({i})", abstract))
    # the store's other weeks: radiology and general AI, for a realistic IDF
    for week in range(1, 9):
        day = IN_WEEK - timedelta(weeks=week)
        for title, abstract in RADIOLOGY + GENERAL_AI:
            papers.append(_paper(f"{title} [w{week}]", abstract, published=day,
                                 first_seen=datetime.combine(day, datetime.min.time(), UTC)))  # fmt: skip
    return add_papers(store, papers)


def test_a_thin_week_gives_a_short_issue_and_says_why(
    project: Path, environ: dict[str, str], run_cli: Callable[..., Result]
) -> None:
    settings = _settings(project, environ)
    with Store.open(settings.database_url) as store:
        ids = _thin_week(store)
    result = run_cli("compose", "--week", WEEK, "--explain", env={**environ, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Issue #1: 3 papers," in result.stderr
    assert "33 candidates" in result.stdout
    assert (
        "3 of 33 candidates cleared the relevance floor: 30 matched none of the required terms."
        in (result.stdout)
    )
    assert "off-topic: none of the required terms" in result.stdout
    assert "Warning: a short issue: 3 of 33 candidates cleared the relevance floor" in result.stderr
    with Store.open(settings.database_url) as store:
        composed = compose_issue(settings, store, window=week_window(WEEK), now=NOW)
    chosen = {p.id for p in composed.issue.papers}
    assert chosen == {ids[t] for t, _ in RADIOLOGY}
    yeast = ids["Deep learning for yeast cell segmentation in fluorescence microscopy (0)"]
    (row,) = [s for s in composed.selection.ranked if s.paper_id == yeast]
    assert row.status == "off-topic" and row.score > 2  # it scored, but names no imaging topic


def test_a_pin_overrides_the_floor(project: Path, environ: dict[str, str]) -> None:
    settings = _settings(project, environ)
    with Store.open(settings.database_url) as store:
        ids = _thin_week(store)
        robots = ids["Reinforcement learning agents for warehouse robotics (0)"]
        composed = compose_issue(settings, store, window=week_window(WEEK), pins=[robots], now=NOW)
    assert robots in [p.id for p in composed.issue.papers] and len(composed.issue.papers) == 4


def test_candidates_are_papers_published_in_the_window(
    project: Path, environ: dict[str, str]
) -> None:
    settings = _settings(project, environ)
    seen = datetime(2026, 5, 28, 9, tzinfo=UTC)
    abstract = RADIOLOGY[0][1]
    with Store.open(settings.database_url) as store:
        ids = add_papers(
            store,
            [
                _paper("In the week", abstract),
                # PubMed dates are reliable: an old paper indexed this week is not news
                _paper("Old PubMed paper", abstract, source="pubmed", kind="paper",
                       published=date(2026, 4, 10), first_seen=seen),
                # a feed without reliable dates: first seen counts, a few weeks back at most
                _paper("Recent feed item", abstract, source="rss", kind="paper",
                       published=date(2026, 5, 15), first_seen=seen),
                _paper("Ancient feed item", abstract, source="rss", kind="paper",
                       published=date(2025, 1, 15), first_seen=seen),
                _paper("Next week", abstract, published=date(2026, 6, 2), first_seen=seen),
            ],
        )  # fmt: skip
        with store.read() as session:
            found = load_candidates(session, week_window(WEEK), late_days=28)
    assert {p.id for p in found} == {ids["In the week"], ids["Recent feed item"]}


def test_idf_comes_from_the_whole_store(project: Path, environ: dict[str, str]) -> None:
    """A term every paper of this week has is still rare in the store: it keeps its weight."""
    settings = _settings(project, environ)
    with Store.open(settings.database_url) as store:
        _thin_week(store)
        add_papers(store, [_paper(f"Mammography screening with AI, site {i}",
                                  "Mammography AI as a second reader.") for i in range(3)])  # fmt: skip
        relevance.refresh_store(settings, store)
        profile = relevance.profile_of(settings)
        with store.read() as session:
            stats = relevance.load_stats(session.connection(), profile)
            week = [
                p
                for p in load_candidates(session, week_window(WEEK))
                if p.title.startswith("Mammography")
            ]
    options = SelectOptions(max_papers=6)
    alone = select(week, week_window(WEEK), profile, options=options)
    whole = select(week, week_window(WEEK), profile, options=options, stats=stats)
    assert stats.docs == 33 + 8 * 6 + 3

    def mammo(selection: Any) -> float:
        return float(
            next(p.points for p in selection.ranked[0].parts if p.label.startswith('"mammography"'))
        )

    assert mammo(whole) > 3 * mammo(alone)


def test_the_archive_lists_on_topic_papers_only(
    project: Path, environ: dict[str, str], run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    settings = _settings(project, environ)
    feed = tmp_path / "papers.jsonl"
    import json

    lines = [
        {"title": t, "abstract": a, "authors": ["A B"], "source": "arxiv", "kind": "preprint",
         "published": "2026-05-27"}
        for t, a in RADIOLOGY + GENERAL_AI
    ]  # fmt: skip
    feed.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert run_cli("ingest", str(feed)).exit_code == 0  # ingest scores what it stored
    with Store.open(settings.database_url) as store:
        server = LiveServer(create_app(settings, store=store)).start()
        try:
            with urllib.request.urlopen(f"{server.url}/?per_page=50") as page:
                html = page.read().decode()
        finally:
            server.stop()
    for title, _ in RADIOLOGY:
        assert title in html
    for title, _ in GENERAL_AI:
        assert title not in html
    # the editor still sees every paper
    listed = run_cli("papers", "--json")
    assert all(t in listed.stdout for t, _ in GENERAL_AI)


def test_the_floor_defaults_work_for_this_repositorys_profile() -> None:
    repo = Path(__file__).resolve().parents[1] / "slice.toml"
    settings = load_settings(config=repo, environ={})
    profile: Profile = relevance.profile_of(settings)
    assert profile.required and profile.min_score > 0
    window = week_window(WEEK)

    class Row:
        def __init__(self, i: int, title: str, abstract: str) -> None:
            self.id, self.title, self.abstract = i, title, abstract
            self.source, self.published, self.published_version_id = "arxiv", IN_WEEK, None

    rows = [Row(i, t, a) for i, (t, a) in enumerate(RADIOLOGY + GENERAL_AI)]
    chosen = select(rows, window, profile, options=SelectOptions(max_papers=6)).chosen
    assert {s.paper_id for s in chosen} == {0, 1, 2}


def test_a_paper_whose_abstract_arrives_later_is_scored_again(
    project: Path, environ: dict[str, str], run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    """First seen without an abstract (under the floor), then with one: it reaches the archive."""
    import json

    settings = _settings(project, environ)
    title = "A multicentre reader study across twelve hospitals"
    abstract = (
        "A deep learning model for chest radiograph triage was read alongside radiologists "
        "on 12 000 CT and radiograph examinations; radiology reporting time fell by a third."
    )
    feed = tmp_path / "papers.jsonl"

    def ingest(text: str) -> None:
        line = {"title": title, "abstract": text, "authors": ["A B"], "source": "arxiv",
                "kind": "preprint", "published": "2026-05-27", "arxiv_id": "2605.01234"}  # fmt: skip
        feed.write_text(json.dumps(line) + "\n", encoding="utf-8")
        assert run_cli("ingest", str(feed)).exit_code == 0

    def in_archive() -> bool:
        with Store.open(settings.database_url) as store:
            server = LiveServer(create_app(settings, store=store)).start()
            try:
                with urllib.request.urlopen(f"{server.url}/?per_page=50") as page:
                    return title in page.read().decode()
            finally:
                server.stop()

    ingest("")
    assert not in_archive()  # a title alone does not clear the floor
    ingest(abstract)
    assert in_archive()
