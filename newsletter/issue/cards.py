"""How a paper looks in an issue: its link, authors, badge, date and abstract.

Everything that comes from a paper is untrusted. HTML is re-sanitized here (only
``<i> <b> <sub> <sup>`` survive, without attributes), per-reader placeholder markers
are defused (`newsletter.issue.outbox.strip_placeholders`), and braces are written as
character references so nothing from a paper can look like template syntax to the
MJML lint. Links are built from identifiers, and a stored URL is used only if it is
absolute http(s).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

from newsletter.core.models import Paper, PaperKind
from newsletter.issue.abstracts import KNOWN_LABELS, Section, is_structured, sections
from newsletter.issue.outbox import strip_placeholders
from newsletter.papers import links
from newsletter.papers.text import (
    bound_nesting,
    clean_tex,
    one_line,
    reading_text,
    sanitize,
    scrub,
)

SOURCE_LABELS = {
    "pubmed": "PubMed",
    "arxiv": "arXiv",
    "medrxiv": "medRxiv",
    "biorxiv": "bioRxiv",
    "rss": "RSS",
}
_MINOR_WORDS = {"and", "of", "the", "for", "in", "to", "with", "or"}
_LABEL = re.compile(r"(^|(?<=[.!?] ))([A-Z][A-Za-z][A-Za-z ,/&()-]{0,48}):(?= )")
_SENTENCE_END = re.compile(r"[.!?](?:</(?:i|b|sub|sup)>)?(?= [A-Z0-9(<])")


def _defuse(text: str) -> str:
    """Markup-safe text from a paper: no placeholder markers, no template braces."""
    return strip_placeholders(text).replace("{", "&#123;").replace("}", "&#125;")


_MATH = re.compile(r"<(?:\w+:)?math\b.*?</(?:\w+:)?math\s*>", re.S | re.I)


def _math_text(match: re.Match[str]) -> str:
    # Ingest turns MathML into text; a paper stored some other way keeps at least the symbols.
    return re.sub(r"<[^>]*>", "", match.group(0))


def clean_html(fragment: str) -> str:
    """A paper's HTML fragment with only safe inline markup."""
    fragment = scrub(fragment)  # a record stored before ingest scrubbed them
    if "math" in fragment:
        fragment = _MATH.sub(_math_text, fragment)
    # TeX too, for papers stored before ingest cleaned it for every source
    return bound_nesting(clean_tex(sanitize(fragment)))


def plain(fragment: str) -> str:
    """A paper's fragment as plain text (for the text part and subjects), superscripts raised."""
    return strip_placeholders(scrub(reading_text(clean_tex(fragment))))


def inline_html(fragment: str) -> Markup:
    """A title or short text: safe markup kept, on one line."""
    return Markup(_defuse(one_line(clean_html(fragment))))  # noqa: S704 - sanitized by nh3


def editor_html(text: str) -> Markup:
    """The editor's plain text (intro, notes): escaped, paragraphs kept."""
    paragraphs = [one_line(p) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    safe = [_defuse(str(escape(p))) for p in paragraphs]
    return Markup("".join(f"<p>{p}</p>" for p in safe))  # noqa: S704 - each part escaped


def paper_link(paper: Paper) -> str:
    """The title's link (`newsletter.papers.links.paper_link`), safe to put in the outbox."""
    return strip_placeholders(links.paper_link(paper))


def short_authors(authors: list[str], limit: int) -> str:
    """ "A, B, C" or, past ``limit`` names, the first three and "et al."."""
    names = [one_line(plain(a)) for a in authors if a and a.strip()]
    if len(names) > limit:
        return ", ".join(names[: min(3, limit)]) + " et al."
    return ", ".join(names)


def source_label(source: str) -> str:
    return SOURCE_LABELS.get(source.lower(), source)


def kind_label(kind: str) -> str:
    return "Preprint" if kind == PaperKind.PREPRINT.value else "Paper"


def date_label(day: date) -> str:
    return f"{day:%b} {day.day}, {day.year}"


def range_label(start: date, end: date) -> str:
    """ "May 25 – 31, 2026", "May 25 – June 7, 2026", "Dec 29, 2025 – Jan 4, 2026"."""
    if start.year != end.year:
        return f"{date_label(start)} – {date_label(end)}"
    if start.month != end.month:
        return f"{start:%b} {start.day} – {end:%b} {end.day}, {end.year}"
    if start == end:
        return date_label(start)
    return f"{start:%b} {start.day} – {end.day}, {end.year}"


def _visible_cut(fragment: str, limit: int) -> tuple[str, bool]:
    """Cut an HTML fragment after at most ``limit`` visible characters, at a sentence end if
    one is near, else at a word. Returns the cut fragment and whether anything was cut."""
    visible = 0
    positions: list[int] = []  # index in fragment after each visible character
    i = 0
    while i < len(fragment):
        ch = fragment[i]
        if ch == "<":
            end = fragment.find(">", i)
            i = len(fragment) if end < 0 else end + 1
            continue
        if ch == "&":
            end = fragment.find(";", i, i + 10)
            i = i + 1 if end < 0 else end + 1
        else:
            i += 1
        visible += 1
        positions.append(i)
    if visible <= limit:
        return fragment, False
    hard = positions[limit - 1]
    head = fragment[:hard]
    ends = [m.end() for m in _SENTENCE_END.finditer(head + " A")]
    ends = [e for e in ends if e <= hard]
    if ends and ends[-1] >= hard * 0.5:
        cut = head[: ends[-1]]
    else:
        space = head.rfind(" ")
        cut = (head[:space] if space > hard * 0.5 else head).rstrip(" ,;:") + "…"
    return clean_html(cut), True


def _visible_len(fragment: str) -> int:
    return len(plain(fragment))


# The order in which a structured abstract gives up words: Funding and the like go
# first, then Background, Methods and unlabelled text shrink to their first sentence,
# and only then are Results and Conclusion cut (the part a reader wants).
_SHRINK_FIRST = ("background", "", "methods")
_FIRST_SENTENCE_CHARS = 220


def trim_abstract(body: str, limit: int) -> tuple[str, bool]:
    """A clean abstract fragment in at most about ``limit`` visible characters.

    A structured abstract keeps its Results and Conclusion: Funding and the like go,
    Background and Methods shrink to about a sentence, then go whole, and only then are
    Results cut. Anything else is cut at a sentence near the limit.
    """
    if _visible_len(body) <= limit:
        return body, False
    parts = sections(body)
    if not is_structured(parts):
        return _visible_cut(body, limit)
    kept = [p for p in parts if p.role != "other"]
    sizes = [_visible_len(p.html) + len(p.label) + 2 for p in kept]
    excess = sum(sizes) - limit
    bodies = [p.html for p in kept]
    for role in _SHRINK_FIRST:
        for i, part in enumerate(kept):
            if excess <= 0 or part.role != role:
                continue
            keep = max(sizes[i] - excess, min(_FIRST_SENTENCE_CHARS, sizes[i]))
            bodies[i], _ = _visible_cut(part.html, max(keep - len(part.label) - 2, 40))
            new = _visible_len(bodies[i]) + len(part.label) + 2
            excess -= sizes[i] - new
            sizes[i] = new
    for role in _SHRINK_FIRST:  # still too long: they go whole before Results are cut
        for i, part in enumerate(kept):
            if excess > 0 and part.role == role and bodies[i]:
                excess -= sizes[i]
                bodies[i], sizes[i] = "", 0
    for role in ("results", "conclusion"):
        for i, part in enumerate(kept):
            if excess <= 0 or part.role != role:
                continue
            keep = max(sizes[i] - excess - len(part.label) - 2, 80)
            bodies[i], _ = _visible_cut(part.html, keep)
            new = _visible_len(bodies[i]) + len(part.label) + 2
            excess -= sizes[i] - new
            sizes[i] = new
    paragraphs = [_with_label(p, b) for p, b in zip(kept, bodies, strict=True) if b]
    return "\n\n".join(paragraphs), True


def _with_label(part: Section, body: str) -> str:
    return f"{part.label}: {body}" if part.label else body


def abstract_html(abstract: str, limit: int) -> tuple[Markup, bool]:
    """The abstract as paragraphs, structured labels in bold; cut if longer than ``limit``."""
    body = clean_html(abstract.strip())
    body, trimmed = trim_abstract(body, limit)
    out: list[str] = []
    for para in re.split(r"\n\s*\n", body):
        para = one_line(para)
        if not para:
            continue
        para = _LABEL.sub(_bold_label, para)
        out.append(f"<p>{_defuse(para)}</p>")
    return Markup("".join(out)), trimmed  # noqa: S704 - sanitized by nh3, labels added here


def _bold_label(match: re.Match[str]) -> str:
    label = match.group(2)
    at_start = match.group(1) == ""
    known = label.lower() in KNOWN_LABELS
    words = label.split()
    titled = all(w[0].isupper() or w in _MINOR_WORDS for w in words)
    if known or (at_start and titled and len(words) <= 4):
        return f"{match.group(1)}<b>{label}:</b>"
    return match.group(0)


def abstract_text(abstract: str, limit: int, *, width: int = 72) -> tuple[str, bool]:
    """The abstract as wrapped plain text, cut like `abstract_html`."""
    body, trimmed = trim_abstract(clean_html(abstract.strip()), limit)
    paragraphs = [one_line(plain(p)) for p in re.split(r"\n\s*\n", body)]
    wrapped = [textwrap.fill(p, width=width, break_long_words=False) for p in paragraphs if p]
    return "\n\n".join(wrapped), trimmed


@dataclass(frozen=True)
class PaperCard:
    """What the templates show for one paper (HTML fields are sanitized Markup)."""

    id: int
    title_html: Markup
    title_text: str
    url: str
    authors: str
    source: str
    kind: str
    date: str
    journal: str
    abstract_html: Markup
    abstract_text: str
    trimmed: bool
    preprint_url: str
    anchor: str
    score: float
    featured: bool
    headline: str
    why_it_matters: str
    details: list[str]
    takeaway: str
    note: str


def make_card(
    paper: Paper,
    *,
    abstract_chars: int,
    max_authors: int,
    preprint: Paper | None = None,
    score: float = 0.0,
    featured: bool = False,
    headline: str = "",
    why_it_matters: str = "",
    details: list[str] | None = None,
    takeaway: str = "",
    note: str = "",
) -> PaperCard:
    assert paper.id is not None
    body_html, trimmed = abstract_html(paper.abstract, abstract_chars)
    body_text, _ = abstract_text(paper.abstract, abstract_chars)

    def editor(text: str) -> str:  # issue.json's words: typed, pasted or drafted from a paper
        return strip_placeholders(scrub(text))

    return PaperCard(
        id=paper.id,
        title_html=inline_html(paper.title),
        title_text=one_line(plain(paper.title)),
        url=paper_link(paper),
        authors=short_authors(list(paper.authors or []), max_authors),
        source=source_label(paper.source),
        kind=kind_label(paper.kind),
        date=date_label(paper.published),
        journal=one_line(plain(paper.journal or "")),
        abstract_html=body_html,
        abstract_text=body_text,
        trimmed=trimmed,
        preprint_url=paper_link(preprint) if preprint is not None else "",
        anchor=f"paper-{paper.id}",
        score=score,
        featured=featured,
        headline=one_line(editor(headline)),
        why_it_matters=one_line(editor(why_it_matters)),
        details=[one_line(editor(d)) for d in (details or []) if d.strip()],
        takeaway=one_line(editor(takeaway)),
        note=one_line(editor(note)),
    )
