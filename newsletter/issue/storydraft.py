"""A story draft, the extractive way to write one, and the checks any draft must pass.

The extractive draft (offline and deterministic): the title as headline (cut to 70
characters at a subtitle or a word), the relevance or background statement as the
why-it-matters line, the result sentences that carry figures as the details, and the
conclusion as the takeaway. `newsletter.issue.stories` fills an issue's featured
papers with these, or with a language model's drafts that pass `problems`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from newsletter.issue.abstracts import (
    RELEVANCE_LABELS,
    Section,
    has_figure,
    invented_numbers,
    sections,
    split_sentences,
)
from newsletter.papers.text import reading_text

HEADLINE_CHARS = 70
LINE_CHARS = 240  # why it matters, the takeaway
DETAIL_CHARS = 240
MIN_DETAILS, MAX_DETAILS = 2, 5
EXTRACTIVE = "extractive"
_PHRASE_START = re.compile(
    r" (?=(?:with|using|in|for|on|at|via|from|among|by|trained|based|across|through|versus|"
    r"vs\.?|and|of|to|after|before|during|without|within|under|over|a|an|the|between|into|"
    r"than|as|per|about|against|towards?|upon|beyond|amid|or) )",
    re.I,
)


@dataclass(frozen=True)
class StoryDraft:
    headline: str
    why_it_matters: str
    details: list[str]
    takeaway: str


# --- shortening ---------------------------------------------------------------


def shorten(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, cut at a word with "…" if it must be cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:–-")
    return cut + "…"


def headline_from_title(title: str, limit: int = HEADLINE_CHARS) -> str:
    """A title as a headline: whole if it fits, else its main clause, else cut at a word."""
    title = " ".join(title.split()).rstrip(".")
    if len(title) <= limit:
        return title
    for mark in (": ", ". ", " — ", " – ", " - ", "? "):
        head = title.split(mark, 1)[0].strip()
        if mark in title and 20 <= len(head) <= limit:
            return head + ("?" if mark == "? " else "")
    without = re.sub(r"\s*\([^()]*\)", "", title)
    if len(without) <= limit:
        return without
    # cut before a word that opens a trailing phrase ("... trained on 1.2 million studies")
    cuts = [
        m.start()
        for m in _PHRASE_START.finditer(without)
        if 25 <= m.start() <= limit and _ends_a_phrase(without[: m.start()])
    ]
    if cuts:
        return without[: cuts[-1]].rstrip(" ,;:–-")
    return shorten(without, limit)


def _ends_a_phrase(head: str) -> bool:
    """Whether a headline may end after ``head`` (not on "of", "the" or "trained")."""
    last = head.rstrip().rsplit(" ", 1)[-1].lower()
    return not (_PHRASE_START.match(f" {last} ") or last.endswith(("ed", "ing")))


def _line(text: str, limit: int = LINE_CHARS) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return shorten(split_sentences(text)[0], limit)


# --- the extractive draft -------------------------------------------------------


def _first_sentence(section: Section | None) -> str:
    if section is None:
        return ""
    found = split_sentences(section.text)
    return found[0] if found else ""


_CONNECTIVE = re.compile(
    r"^(?:however|moreover|furthermore|in addition|additionally|overall|finally|notably|"
    r"in contrast|here|in this (?:paper|study|work)|in summary|thus|therefore),\s+",
    re.I,
)
_PARENTHESIS = re.compile(r"\s*\([^()]*\)")


def _fit(clause: str, limit: int) -> str:
    """A detail in ``limit`` characters: asides without figures go first, then it is cut."""
    if len(clause) > limit:
        clause = _PARENTHESIS.sub(lambda m: m.group(0) if has_figure(m.group(0)) else "", clause)
    return shorten(clause, limit)


def _clauses(sentence: str) -> list[str]:
    """A sentence split at its semicolons, except those inside brackets."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(sentence):
        depth += (ch in "([{") - (ch in ")]}")
        if ch == ";" and depth <= 0:
            out.append(sentence[start:i])
            start = i + 1
    out.append(sentence[start:])
    return out


def _details(candidates: list[str]) -> list[str]:
    out: list[str] = []
    for sentence in candidates:
        for clause in _clauses(sentence):
            clause = _CONNECTIVE.sub("", clause.strip()).rstrip(".")
            if clause:
                clause = _fit(clause[0].upper() + clause[1:], DETAIL_CHARS)
                if clause not in out:
                    out.append(clause)
    return out


def extractive_draft(title: str, abstract: str) -> StoryDraft:
    """A story drafted from the paper's own sentences (deterministic, offline)."""
    parts = sections(abstract)
    by_label = {s.label.lower(): s for s in parts if s.label}
    roles: dict[str, list[Section]] = {}
    for part in parts:
        roles.setdefault(part.role, []).append(part)
    headline = headline_from_title(reading_text(title))

    relevance = next((by_label[x] for x in RELEVANCE_LABELS if x in by_label), None)
    results = [s for part in roles.get("results", []) for s in split_sentences(part.text)]
    methods = [s for part in roles.get("methods", []) for s in split_sentences(part.text)]
    conclusion = [
        s for s in roles.get("conclusion", []) if s is not relevance
    ]  # the relevance statement already says why it matters
    why = _first_sentence(relevance) or _first_sentence(
        next(iter(roles.get("background", [])), None)
    )
    takeaway = _first_sentence(conclusion[0]) if conclusion else ""

    if not results and not conclusion:  # unstructured: first sentence, the body, the last
        body = [s for part in parts for s in split_sentences(part.text)]
        if len(body) >= 3:
            why = why or body[0]
            takeaway = body[-1]
            results = body[1:-1]
        else:
            results = body
    chosen = [s for s in results if has_figure(s)]
    if len(_details(chosen)) < MIN_DETAILS:  # the sample, from the methods, comes first
        chosen = [s for s in methods if has_figure(s)][:1] + chosen
    if len(_details(chosen)) < MIN_DETAILS:  # then the other results, in their order
        extra = [s for s in results if s not in chosen][: MIN_DETAILS - len(_details(chosen))]
        chosen = [s for s in results if s in chosen or s in extra]
    details = _details(chosen)
    details = [d for d in details if d.rstrip(".") != takeaway.rstrip(".")]
    return StoryDraft(
        headline=headline,
        why_it_matters=_line(why),
        details=details[:MAX_DETAILS],
        takeaway=_line(takeaway),
    )


# --- checking any draft -----------------------------------------------------------


def draft_words(draft: StoryDraft) -> str:
    """Every word of a draft, in one text (for the figure check)."""
    return " ".join([draft.headline, draft.why_it_matters, *draft.details, draft.takeaway])


def problems(draft: StoryDraft, *, title: str, abstract: str) -> list[str]:
    """Why a draft cannot be used (an empty list: it can)."""
    out: list[str] = []
    if not draft.headline.strip():
        out.append("no headline")
    if len(draft.headline) > HEADLINE_CHARS:
        out.append(f"the headline has {len(draft.headline)} characters (at most {HEADLINE_CHARS})")
    if not MIN_DETAILS <= len(draft.details) <= MAX_DETAILS:
        out.append(f"{len(draft.details)} details (2 to 5 wanted)")
    source = reading_text(f"{title}\n\n{abstract}")
    invented = invented_numbers(draft_words(draft), source)
    if invented:
        out.append(f"figures not in the abstract: {', '.join(invented)}")
    return out
