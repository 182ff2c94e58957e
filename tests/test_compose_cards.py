"""How one paper is presented: links, authors, dates, abstracts (trimmed, labelled, sanitized)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from newsletter.core.models import Paper
from newsletter.issue.cards import (
    abstract_html,
    abstract_text,
    inline_html,
    paper_link,
    range_label,
    short_authors,
)


def paper(**kw: Any) -> Paper:
    data: dict[str, Any] = {
        "id": 1,
        "title": "T",
        "source": "pubmed",
        "published": date(2026, 5, 27),
    }
    data.update(kw)
    return Paper(**data)


@pytest.mark.parametrize(
    ("fields", "link"),
    [
        ({"kind": "paper", "doi": "10.1148/radiol.2026 1", "pmid": "1"}, "https://doi.org/10.1148/radiol.2026%201"),
        ({"kind": "paper", "pmid": "40000001"}, "https://pubmed.ncbi.nlm.nih.gov/40000001/"),
        ({"kind": "preprint", "arxiv_id": "2605.01234", "doi": "10.48550/arXiv.2605.01234"}, "https://arxiv.org/abs/2605.01234"),
        ({"kind": "preprint", "source": "medrxiv", "doi": "10.1101/x", "url": "https://www.medrxiv.org/content/10.1101/x"},
         "https://www.medrxiv.org/content/10.1101/x"),
        ({"kind": "preprint", "doi": "10.1101/y", "url": "javascript:alert(1)"}, "https://doi.org/10.1101/y"),
        ({"kind": "preprint", "source": "medrxiv", "doi": "10.1101/2026.05.20.1"},
         "https://www.medrxiv.org/content/10.1101/2026.05.20.1"),
        ({"kind": "paper", "pmcid": "PMC1234567"}, "https://pmc.ncbi.nlm.nih.gov/articles/PMC1234567/"),
        # nothing to link to: a title search where the paper came from
        ({"kind": "paper", "url": "/relative/path", "title": "Lung <i>nodule</i> AI"},
         "https://pubmed.ncbi.nlm.nih.gov/?term=Lung+nodule+AI%5BTitle%5D"),
        ({"kind": "paper", "pmid": "12; DROP", "title": "T"}, "https://pubmed.ncbi.nlm.nih.gov/?term=T%5BTitle%5D"),
        ({"kind": "preprint", "source": "arxiv", "title": "Nodules & CT"},
         "https://arxiv.org/search/?query=Nodules+%26+CT&searchtype=title"),
        ({"kind": "preprint", "source": "medrxiv", "title": "Nodules on CT"},
         "https://www.medrxiv.org/search/Nodules%20on%20CT"),
    ],
)  # fmt: skip
def test_title_link_prefers_the_journal_doi(fields: dict[str, object], link: str) -> None:
    assert paper_link(paper(**fields)) == link


def test_long_author_lists_are_shortened() -> None:
    names = [f"Author {i}" for i in range(1, 10)]
    assert short_authors(names, 6) == "Author 1, Author 2, Author 3 et al."
    assert (
        short_authors(names[:6], 6) == "Author 1, Author 2, Author 3, Author 4, Author 5, Author 6"
    )
    assert short_authors(["<b>Eve</b>", "  "], 6) == "Eve"


def test_date_ranges() -> None:
    assert range_label(date(2026, 5, 25), date(2026, 5, 31)) == "May 25 – 31, 2026"
    assert range_label(date(2026, 5, 25), date(2026, 6, 7)) == "May 25 – Jun 7, 2026"
    assert range_label(date(2025, 12, 29), date(2026, 1, 4)) == "Dec 29, 2025 – Jan 4, 2026"


def test_structured_labels_are_bold_and_paragraphs_kept() -> None:
    html, trimmed = abstract_html(
        "Purpose: To test.\n\nMaterials and Methods: We did. Results: It worked.", 1000
    )
    assert str(html) == (
        "<p><b>Purpose:</b> To test.</p>"
        "<p><b>Materials and Methods:</b> We did. <b>Results:</b> It worked.</p>"
    )
    assert not trimmed
    # a colon inside a sentence is not a label
    html, _ = abstract_html("We compared two arms: A and B.", 1000)
    assert "<b>" not in str(html)


def test_long_abstracts_are_cut_at_a_sentence() -> None:
    text = "First sentence is here. " * 20 + "Tail."
    html, trimmed = abstract_html(text, 100)
    assert trimmed
    assert str(html) == "<p>" + " ".join(["First sentence is here."] * 4) + "</p>"
    plain, trimmed = abstract_text(text, 100)
    assert trimmed and plain.endswith("First sentence is here.") and len(plain) <= 100


def test_an_abstract_without_sentences_is_cut_at_a_word() -> None:
    html, trimmed = abstract_html("word " * 100, 52)
    assert trimmed and str(html) == "<p>" + " ".join(["word"] * 10) + "…</p>"


def test_safe_markup_kept_and_balanced_after_a_cut() -> None:
    html, _ = abstract_html(
        "The <i>in vivo</i> study of H<sub>2</sub>O. <i>Very long italic " + "x " * 100 + "</i>", 60
    )
    assert str(html) == "<p>The <i>in vivo</i> study of H<sub>2</sub>O.</p>"
    html, _ = abstract_html("<i>" + "word " * 50 + "</i>", 40)
    assert str(html).startswith("<p><i>word") and str(html).endswith("…</i></p>")


def test_titles_lose_unsafe_markup_and_template_braces() -> None:
    assert str(
        inline_html('<script>x()</script><a href="javascript:y">A</a> <i>B</i> {{ c }}')
    ) == ("A <i>B</i> &#123;&#123; c &#125;&#125;")
    assert "__SLICE_" not in str(inline_html("__SLICE_UNSUBSCRIBE_URL__"))
