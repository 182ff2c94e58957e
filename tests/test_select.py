"""Selection: windows, the BM25 profile scorer, caps, overrides and the editor model."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from newsletter.core.models import Paper
from newsletter.issue.choices import Choice, EditorModel
from newsletter.issue.scoring import Profile, Term, paper_tokens, tokens
from newsletter.issue.select import SelectOptions, dedupe, select
from newsletter.issue.window import Window, last_complete_week, week_window

WEEK = week_window("2026-W22")
W = WEEK


def paper(
    pid: int, title: str, abstract: str = "", *, source: str = "pubmed", day: int = 27, **kw: Any
) -> Paper:
    return Paper(
        id=pid, title=title, abstract=abstract, source=source, published=date(2026, 5, day), **kw
    )


def profile(
    terms: dict[str, float] | None = None, exclude: list[str] | None = None, recency: float = 0.0
) -> Profile:
    return Profile.from_settings(terms or {}, exclude or [], recency)


def ids(selection_chosen: list) -> list[int]:  # type: ignore[type-arg]
    return [s.paper_id for s in selection_chosen]


# --- windows -------------------------------------------------------------------


def test_week_window_is_monday_to_sunday() -> None:
    assert week_window("2026-W22") == Window(date(2026, 5, 25), date(2026, 5, 31))
    assert W.issue_id == "2026-W22"
    assert week_window("2020-W53").start == date(2020, 12, 28)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("2026-22", "is not an ISO week"),
        ("2026-W60", "has no week 60"),
        ("2025-W53", "has no week 53"),
    ],
)
def test_bad_weeks_say_how_to_write_them(bad: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        week_window(bad)


def test_default_window_is_the_last_complete_iso_week() -> None:
    assert last_complete_week(date(2026, 6, 3)) == W  # a Wednesday
    assert last_complete_week(date(2026, 6, 1)) == W  # the Monday after
    assert last_complete_week(date(2026, 5, 31)).issue_id == "2026-W21"  # Sunday: W22 not over


def test_custom_window_gets_its_own_id() -> None:
    assert Window(date(2026, 5, 1), date(2026, 5, 10)).issue_id == "2026-05-01_2026-05-10"


# --- terms ---------------------------------------------------------------------


def test_terms_match_phrases_prefixes_and_plurals() -> None:
    words = tokens("Deep-learning models for Radiologists reading CTs and radiology reports")
    assert Term.parse("deep learning", 1).count(words) == 1
    assert Term.parse("radiolog*", 1).count(words) == 2
    assert Term.parse("CT", 1).count(words) == 1
    assert Term.parse("model", 1).count(words) == 1
    assert Term.parse("learning deep", 1).count(words) == 0


# --- ranking -------------------------------------------------------------------


def test_profile_terms_rank_papers_and_weights_matter() -> None:
    papers = [
        paper(1, "Ultrasound of the thyroid", "Ultrasound findings."),
        paper(2, "MRI of the knee", "MRI protocol."),
        paper(3, "MRI and ultrasound together", "Both."),
    ]
    sel = select(
        papers, W, profile({"mri": 1.0, "ultrasound": 3.0}), options=SelectOptions(max_papers=3)
    )
    assert ids(sel.chosen) == [3, 1, 2]
    sel = select(
        papers, W, profile({"mri": 3.0, "ultrasound": 1.0}), options=SelectOptions(max_papers=3)
    )
    assert ids(sel.chosen) == [3, 2, 1]


def test_title_counts_more_than_abstract() -> None:
    papers = [
        paper(1, "Segmentation of livers", "A study."),
        paper(2, "A study", "Segmentation of livers."),
    ]
    sel = select(papers, W, profile({"segmentation": 1.0}), options=SelectOptions())
    assert ids(sel.chosen) == [1, 2]
    assert sel.ranked[0].parts[0].label == '"segmentation" in title'
    assert sel.ranked[1].parts[0].label == '"segmentation" in abstract'


def test_without_terms_newest_first() -> None:
    papers = [paper(1, "a", day=25), paper(2, "b", day=30), paper(3, "c", day=27)]
    sel = select(papers, W, profile(recency=0.1), options=SelectOptions())
    assert ids(sel.chosen) == [2, 3, 1]
    assert [p.label for p in sel.chosen[0].parts] == ["recency +5d"]


def test_exclusions_and_unmatched_papers_are_left_out_with_reasons() -> None:
    papers = [
        paper(1, "Deep learning for canine radiographs", "veterinary"),
        paper(2, "Hospital parking"),
        paper(3, "Deep learning CT"),
    ]
    sel = select(
        papers, W, profile({"deep learning": 1.0}, ["veterinary"]), options=SelectOptions()
    )
    assert ids(sel.chosen) == [3]
    reasons = {s.paper_id: (s.status, s.reason) for s in sel.ranked}
    assert reasons[1] == ("excluded", 'profile excludes "veterinary"')
    assert reasons[2] == ("unmatched", "matches no profile term")


def test_per_source_cap_keeps_one_source_from_filling_the_issue() -> None:
    papers = [paper(i, f"MRI study {i}", source="arxiv") for i in range(1, 6)]
    papers += [paper(10, "An MRI note", source="pubmed")]
    sel = select(
        papers, W, profile({"mri": 1.0}), options=SelectOptions(max_papers=4, per_source_cap=2)
    )
    sources = [s.paper.source for s in sel.chosen]
    assert sources.count("arxiv") == 2 and "pubmed" in sources
    assert len(sel.chosen) == 3  # the cap is a cap: no third arXiv paper to fill up
    capped = [s for s in sel.ranked if s.status == "capped"]
    assert capped and "per_source_cap" in capped[0].reason


def test_max_papers_cuts_the_ranking() -> None:
    papers = [paper(i, "MRI " * i) for i in range(1, 8)]
    sel = select(papers, W, profile({"mri": 1.0}), options=SelectOptions(max_papers=3))
    assert len(sel.chosen) == 3
    assert sum(1 for s in sel.ranked if s.status == "below") == 4


def test_pins_beat_exclusions_caps_and_the_profile_editor_excludes_win() -> None:
    papers = [
        paper(1, "Hospital parking"),  # matches nothing
        paper(2, "MRI veterinary"),  # excluded by profile
        paper(3, "MRI of the brain"),
        paper(4, "MRI of the knee"),
    ]
    options = SelectOptions(max_papers=3, pins=(1, 2), excludes=(4,))
    sel = select(papers, W, profile({"mri": 1.0}, ["veterinary"]), options=options)
    assert set(ids(sel.chosen)) == {1, 2, 3}
    status = {s.paper_id: s.status for s in sel.ranked}
    assert status == {1: "pinned", 2: "pinned", 3: "selected", 4: "excluded"}


def test_preprint_with_a_journal_version_is_shown_once_as_the_journal_paper() -> None:
    journal = paper(1, "MRI study", kind="paper", doi="10.1/x")
    preprint = paper(2, "MRI study (preprint)", kind="preprint", published_version_id=1)
    other = paper(3, "Other")
    assert [p.id for p in dedupe([preprint, journal, other], {1: journal})] == [1, 3]
    assert [p.id for p in dedupe([preprint, other], {1: journal})] == [1, 3]


def test_explain_rows_list_every_candidate_and_its_terms() -> None:
    papers = [paper(1, "MRI of the knee", "MRI MRI"), paper(2, "Parking")]
    rows = select(papers, W, profile({"mri": 2.0}), options=SelectOptions()).explain_rows()
    assert rows[0]["id"] == 1 and rows[0]["status"] == "selected"
    assert rows[0]["parts"][0][0] == '"mri" in title + abstract ×2'  # type: ignore[index]
    assert rows[0]["score"] > 0  # type: ignore[operator]
    assert rows[1]["status"] == "unmatched"


# --- learning from the editor ----------------------------------------------------


def _choice(text: str, wanted: bool) -> Choice:
    return Choice(tokens(text) * 1, wanted, 2.0)


def test_editor_model_learns_what_the_editor_pins_and_removes() -> None:
    history = [
        _choice("Ultrasound elastography of liver fibrosis", True),
        _choice("Point-of-care ultrasound for lung B-lines", True),
        _choice("Ultrasound guided thyroid biopsy outcomes", True),
        _choice("Billing codes and radiology department revenue", False),
        _choice("Department revenue after billing reform", False),
        _choice("Radiology billing audit", False),
    ]
    model = EditorModel.train(history)
    assert model is not None
    liked = model.points(tokens("Ultrasound of carotid plaque"), weight=3.0)
    disliked = model.points(tokens("Revenue cycle and billing in imaging"), weight=3.0)
    neutral = model.points(tokens("Mammography screening intervals"), weight=3.0)
    assert liked > 0.3 > neutral > -0.3 > disliked
    assert abs(liked) <= 3.0 and abs(disliked) <= 3.0
    assert "ultrasound" in [w for w, _ in model.top_terms(3)]


def test_editor_model_changes_the_ranking() -> None:
    history = [_choice("ultrasound elastography", True), _choice("billing revenue", False)] * 3
    model = EditorModel.train(history)
    papers = [paper(1, "MRI and billing revenue"), paper(2, "MRI and ultrasound elastography")]
    plain_sel = select(papers, W, profile({"mri": 1.0}), options=SelectOptions())
    learned = select(papers, W, profile({"mri": 1.0}), options=SelectOptions(), editor=model)
    assert ids(plain_sel.chosen) == [1, 2]  # tie on the profile: the lower id first
    assert ids(learned.chosen) == [2, 1]
    assert any(p.label == "editor's past choices" for p in learned.chosen[0].parts)


def test_no_history_or_one_sided_history_falls_back_to_the_profile() -> None:
    assert EditorModel.train([]) is None
    assert EditorModel.train([_choice("ultrasound", True)] * 3) is None


def test_paper_tokens_count_the_title_twice() -> None:
    assert paper_tokens(paper(1, "MRI", "knee")) == ["mri", "mri", "knee"]
