"""Story drafts: what compose writes for a featured paper, and how an editor reviews it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.abstracts import invented_numbers, numbers, sections, split_sentences
from newsletter.issue.compose import compose_issue
from newsletter.issue.storydraft import (
    StoryDraft,
    draft_words,
    extractive_draft,
    headline_from_title,
    problems,
)
from newsletter.issue.window import week_window
from tests.composedata import NOW, PAPERS, STRUCTURED, WEEK, add_papers, project_settings

LUNG = PAPERS[0]
FOUNDATION = PAPERS[1]


def compose(settings: Settings, store: Store, **kw: Any):  # type: ignore[no-untyped-def]
    return compose_issue(settings, store, window=week_window(WEEK), now=NOW, **kw)


def featured(folder: Path) -> list[dict[str, Any]]:
    issue = json.loads((folder / "issue.json").read_text())
    return [p for p in issue["papers"] if p["featured"]]


# --- the extractive draft ----------------------------------------------------------


def test_a_structured_abstract_gives_results_with_figures_and_the_conclusion() -> None:
    draft = extractive_draft(LUNG["title"], LUNG["abstract"])
    assert draft.headline == "Deep learning malignancy risk for pulmonary nodules"
    assert draft.why_it_matters == (
        "Lung cancer screening with low-dose CT produces many indeterminate nodules."
    )
    assert draft.details == [
        "The model reached an AUC of 0.93 (95% CI: 0.91, 0.95), compared with 0.88 for Lung-RADS",
        "False-positive recalls fell by 27%",
    ]
    assert draft.takeaway == (
        "A deep learning malignancy score could reduce unnecessary follow-up CT in lung "
        "cancer screening."
    )
    assert problems(draft, title=LUNG["title"], abstract=LUNG["abstract"]) == []
    # deterministic: the same paper gives the same words
    assert extractive_draft(LUNG["title"], LUNG["abstract"]) == draft


def test_an_unstructured_abstract_gives_the_opening_the_figures_and_the_close() -> None:
    abstract = (
        "Breast cancer screening misses interval cancers. We retrained a model on 12,400 "
        "prior mammograms. It flagged 31% of later interval cancers at a 2% recall rate. "
        "Readers agreed with 78% of its flags. AI could find interval cancers earlier."
    )
    draft = extractive_draft("Finding interval cancers earlier", abstract)
    assert draft.why_it_matters == "Breast cancer screening misses interval cancers."
    assert draft.details == [
        "We retrained a model on 12,400 prior mammograms",
        "It flagged 31% of later interval cancers at a 2% recall rate",
        "Readers agreed with 78% of its flags",
    ]
    assert draft.takeaway == "AI could find interval cancers earlier."


def test_relevance_statements_say_why_it_matters() -> None:
    abstract = (
        "Objectives: To test AI triage.\n\nMethods: 500 CTs.\n\nResults: Sensitivity was 0.94 "
        "and specificity 0.81; reading time fell by 18%.\n\nConclusion: Triage works.\n\n"
        "Clinical relevance statement: Radiologists could read urgent CTs first."
    )
    draft = extractive_draft("AI triage", abstract)
    assert draft.why_it_matters == "Radiologists could read urgent CTs first."
    assert draft.details[:2] == [
        "Sensitivity was 0.94 and specificity 0.81",
        "Reading time fell by 18%",
    ]
    assert draft.takeaway == "Triage works."


@pytest.mark.parametrize(
    ("title", "headline"),
    [
        ("Short title", "Short title"),
        (FOUNDATION["title"], "A foundation model for chest radiograph interpretation"),
        ("Mammography AI as second reader: a prospective multicentre study of 55 581 women",
         "Mammography AI as second reader"),
        ("Deep learning (DL) reconstruction of accelerated knee MRI in 312 patients with pain",
         "Deep learning reconstruction of accelerated knee MRI in 312 patients"),
        ("Pneumonoultramicroscopicsilicovolcanoconiosis " * 3, "Pneumonoultramicroscopicsilicovolcanoconiosis…"),
    ],
)  # fmt: skip
def test_headlines_fit_in_70_characters(title: str, headline: str) -> None:
    assert headline_from_title(title) == headline
    assert len(headline) <= 70


def test_sentences_numbers_and_sections() -> None:
    assert split_sentences("AUC was 0.93 vs. 0.88 (Smith et al. 2020). It is fine. 3 sites.") == [
        "AUC was 0.93 vs. 0.88 (Smith et al. 2020).",
        "It is fine.",
        "3 sites.",
    ]
    # grouped figures are one number, however written; VO2 and T2 are names, not figures
    assert numbers("41 212 and 41,212 scans, 0.90 AUC, VO2max on T2 images, −3.5%") == {
        "41212",
        "0.9",
        "3.5",
    }
    assert invented_numbers("AUC 0.930 in 41,212 scans", STRUCTURED) == []
    assert invented_numbers("AUC 0.97 in 41,212 scans", STRUCTURED) == ["0.97"]
    run_on = sections("BACKGROUND: x. METHODS: y in 3 sites. RESULTS: AUC 0.9. CONCLUSIONS: z.")
    assert [(s.label, s.role) for s in run_on] == [
        ("BACKGROUND", "background"),
        ("METHODS", "methods"),
        ("RESULTS", "results"),
        ("CONCLUSIONS", "conclusion"),
    ]


def test_a_superscript_stays_a_power_in_the_draft_and_in_the_check() -> None:
    """10<sup>5</sup> is a hundred thousand: a draft that reads "105" misreports it."""
    abstract = (
        "Background: Reports are slow.\n\nResults: Pretrained on 10<sup>5</sup> radiographs, "
        "the model reached a dose of 10<sup>-3</sup> Gy per 4 m<sup>2</sup>. Readers agreed "
        "in 88% of cases.\n\nConclusion: It helps."
    )
    draft = extractive_draft("Pretraining at scale", abstract)
    assert draft.details == [
        "Pretrained on 10⁵ radiographs, the model reached a dose of 10⁻³ Gy per 4 m²",
        "Readers agreed in 88% of cases",
    ]
    assert problems(draft, title="Pretraining at scale", abstract=abstract) == []
    assert numbers("10⁵ and 10⁻³ and 4 m²") == {"10^5", "10^-3", "4"}
    for wrong in ("Pretrained on 105 radiographs", "Pretrained on 10⁶ radiographs"):
        flat = StoryDraft(draft.headline, draft.why_it_matters, [wrong, "x"], draft.takeaway)
        assert problems(flat, title="Pretraining at scale", abstract=abstract) == [
            f"figures not in the abstract: {'105' if '105' in wrong else '10^6'}"
        ]


def test_every_demo_paper_drafts_with_the_abstracts_own_figures() -> None:
    from newsletter.demo import sample_papers

    papers = sample_papers()
    assert len(papers) >= 20
    for paper in papers:
        draft = extractive_draft(paper["title"], paper["abstract"])
        source = f"{paper['title']}\n\n{paper['abstract']}"
        assert invented_numbers(draft_words(draft), source) == [], paper["title"]
        assert len(draft.headline) <= 70 and draft.details and draft.takeaway


# --- in issue.json ---------------------------------------------------------------------


def test_compose_drafts_each_featured_story_and_marks_it(
    csettings: Settings, cstore: Store
) -> None:
    add_papers(cstore)
    result = compose(csettings, cstore)
    stories = featured(result.folder.root)
    assert len(stories) == 2
    for story in stories:
        assert story["draft"]["by"] == "extractive"
        assert story["headline"] and len(story["headline"]) <= 70
        assert story["details"]
    assert result.unreviewed == [s["id"] for s in stories]
    assert all(
        p["draft"] is None for p in json.loads(result.folder.selection.read_text())["papers"][2:]
    )
    html = result.folder.email_html.read_text()
    assert "In 55 581 women screened with mammography" in html and "The details:" in html


def test_an_extractive_draft_with_a_figure_not_in_the_abstract_is_not_written(
    csettings: Settings, cstore: Store
) -> None:
    """Cutting "(b)" out of a long title glues "3" and "4" into a 34 the paper never said."""
    title = (
        "Deep learning for grade 3(b)4 lesions on CT in a multicentre retrospective "
        "radiology cohort"
    )
    ids = add_papers(cstore, [{**PAPERS[0], "title": title}])
    csettings.compose.featured = 1
    result = compose(csettings, cstore)
    (story,) = featured(result.folder.root)
    assert story["draft"] is None and not story["headline"] and not story["details"]
    assert result.unreviewed == []
    assert result.warnings == [
        f"paper {ids[title]}: no story drafted (its draft had figures not in the abstract: "
        "34); write its headline and details in issue.json."
    ]


def test_an_edited_or_accepted_draft_is_the_editors_and_is_kept(
    csettings: Settings, cstore: Store
) -> None:
    add_papers(cstore)
    result = compose(csettings, cstore)
    issue = json.loads(result.folder.selection.read_text())
    first, second = issue["papers"][0], issue["papers"][1]
    first["headline"] = "Chest X-ray AI learns from 1% of the labels"
    second["draft"] = None  # accepted as drafted
    result.folder.selection.write_text(json.dumps(issue))

    again = compose(csettings, cstore)
    papers = json.loads(again.folder.selection.read_text())["papers"]
    assert papers[0]["headline"] == "Chest X-ray AI learns from 1% of the labels"
    assert papers[0]["draft"] is None and papers[1]["draft"] is None
    assert papers[1]["details"] == second["details"]
    assert again.unreviewed == []
    assert "Chest X-ray AI learns from 1% of the labels" in again.folder.email_html.read_text()


def test_an_untouched_draft_stays_a_draft_and_is_not_redrafted(
    csettings: Settings, cstore: Store
) -> None:
    add_papers(cstore)
    first = compose(csettings, cstore)
    before = first.folder.selection.read_text()
    again = compose(csettings, cstore)
    assert again.folder.selection.read_text() == before
    assert len(again.unreviewed) == 2


def test_a_draft_of_a_paper_no_longer_featured_is_not_counted(
    csettings: Settings, cstore: Store
) -> None:
    add_papers(cstore)
    result = compose(csettings, cstore)
    issue = json.loads(result.folder.selection.read_text())
    issue["papers"][1]["featured"] = False
    result.folder.selection.write_text(json.dumps(issue))
    again = compose(csettings, cstore)
    assert again.unreviewed == [issue["papers"][0]["id"]]
    assert again.folder.email_html.read_text().count("The details:") == 1  # one story left


def test_drafts_can_be_turned_off(csettings: Settings, cstore: Store) -> None:
    add_papers(cstore)
    csettings.stories.drafts = False
    result = compose(csettings, cstore)
    assert all(not s["headline"] and s["draft"] is None for s in featured(result.folder.root))
    assert result.unreviewed == []


def test_compose_says_how_many_drafts_are_unreviewed(
    run_cli: Callable[..., Result], project: Path, environ: dict[str, str]
) -> None:
    settings = project_settings(project, environ)
    with Store.open(settings.database_url) as store:
        add_papers(store)
    result = run_cli("compose", "--week", WEEK)
    assert result.exit_code == 0, result.output
    assert "2 story drafts are unreviewed (papers " in result.stderr
    assert 'edit their words in issue.json, or delete their "draft" mark to accept them' in (
        " ".join(result.stderr.split())
    )


def test_details_keep_bracketed_semicolons_and_drop_connectives() -> None:
    abstract = (
        "Background: Runners need thresholds.\n\nResults: Thirteen runners [VO2max 67.6 ± 4.1; "
        "age 31 ± 6 years] ran twice. However, LEmin was 27% lower than MLSS (P < 0.001; ES: 3.54); "
        "it predicted speed (r = 0.91).\n\nConclusion: LEmin tracks MLSS."
    )
    draft = extractive_draft("Lactate thresholds in runners", abstract)
    assert draft.details == [
        "Thirteen runners [VO2max 67.6 ± 4.1; age 31 ± 6 years] ran twice",
        "LEmin was 27% lower than MLSS (P < 0.001; ES: 3.54)",
        "It predicted speed (r = 0.91)",
    ]


def test_too_few_figures_are_filled_in_the_abstracts_order() -> None:
    abstract = (
        "Electron clouds limit accelerators. A detector was built for the synchrotron. "
        "It gives a gain of 300 to 25K. The signals match a beam monitor."
    )
    draft = extractive_draft("Electron clouds at ISIS", abstract)
    assert draft.details == [
        "A detector was built for the synchrotron",
        "It gives a gain of 300 to 25K",
    ]
