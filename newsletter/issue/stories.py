"""Story drafts: a headline, why it matters, the details and a takeaway, from the abstract.

For each featured paper whose story the editor has not written, compose fills a draft:

- extractive (the default, offline and deterministic): the title as headline (cut to
  70 characters at a subtitle or a word), the relevance or background statement as the
  why-it-matters line, the result sentences that carry figures as the details, and the
  conclusion as the takeaway;
- with ``[stories] model = "..."``, a language model through the `llm` library (any
  model its plugins offer). Its draft is checked: every figure in it must be in the
  paper's abstract or title, the headline must fit, and there must be 2 to 5 details;
  otherwise the extractive draft is used and compose says why.

A draft carries a ``draft`` mark in issue.json (who wrote it and a digest of its
words). It stays a draft until the editor edits any of its words (the digest no longer
matches) or deletes the mark; `slice compose` counts the unreviewed ones.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from newsletter.core.errors import ComposeError
from newsletter.core.models import Paper
from newsletter.core.settings import StoriesSettings
from newsletter.issue.abstracts import (
    RELEVANCE_LABELS,
    Section,
    has_figure,
    invented_numbers,
    sections,
    split_sentences,
)
from newsletter.issue.issuefile import DraftMark, IssueFile, PaperEntry
from newsletter.papers.text import clean_tex, plain_text, scrub

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


@dataclass
class DraftReport:
    """What filling the drafts did: how many were drafted, and what the editor should know."""

    drafted: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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
    headline = headline_from_title(plain_text(title))

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


def problems(draft: StoryDraft, *, title: str, abstract: str) -> list[str]:
    """Why a draft cannot be used (an empty list: it can)."""
    out: list[str] = []
    if not draft.headline.strip():
        out.append("no headline")
    if len(draft.headline) > HEADLINE_CHARS:
        out.append(f"the headline has {len(draft.headline)} characters (at most {HEADLINE_CHARS})")
    if not MIN_DETAILS <= len(draft.details) <= MAX_DETAILS:
        out.append(f"{len(draft.details)} details (2 to 5 wanted)")
    words = " ".join([draft.headline, draft.why_it_matters, *draft.details, draft.takeaway])
    source = plain_text(f"{title}\n\n{abstract}")
    invented = invented_numbers(words, source)
    if invented:
        out.append(f"figures not in the abstract: {', '.join(invented)}")
    return out


# --- a language model (optional) ----------------------------------------------------

SYSTEM_PROMPT = (
    "You write the featured story of a research newsletter for busy clinicians. "
    "Use only facts and figures from the abstract you are given; never add a number. "
    "Answer with one JSON object and nothing else."
)
PROMPT = """Title: {title}

Abstract:
{abstract}

Write a JSON object with these keys:
"headline": at most 70 characters, plain words, no clickbait;
"why_it_matters": one sentence on why a reader should care;
"details": a list of 2 to 5 short bullet sentences with the paper's own results and figures;
"takeaway": one sentence, the paper's conclusion."""


def _parse(answer: str) -> StoryDraft:
    match = re.search(r"\{.*\}", answer, re.S)
    if match is None:
        raise ValueError("the answer holds no JSON object")
    data = json.loads(match.group(0))
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    details = data.get("details") or []
    if not isinstance(details, list):
        raise ValueError("details is not a list")
    return StoryDraft(
        headline=" ".join(str(data.get("headline") or "").split()),
        why_it_matters=" ".join(str(data.get("why_it_matters") or "").split()),
        details=[" ".join(str(d).split()) for d in details if str(d).strip()],
        takeaway=" ".join(str(data.get("takeaway") or "").split()),
    )


Ask = Callable[[str, str], str]  # (system, prompt) -> the model's answer


def llm_model(name: str) -> Ask:
    """A function asking the `llm` model ``name``; ComposeError if llm or the model is missing."""
    try:
        import llm
    except ImportError:
        raise ComposeError(
            f"[stories] model = {name!r} needs the llm library: "
            "pip install 'slice-newsletter[llm]' (and the llm plugin for that model)."
        ) from None
    try:
        model = llm.get_model(name)
    except llm.UnknownModelError:
        raise ComposeError(
            f"[stories] model = {name!r} is not a model llm knows; `llm models` lists them "
            "(install the plugin that provides it), or remove the setting for extractive drafts."
        ) from None

    def ask(system: str, prompt: str) -> str:
        return model.prompt(prompt, system=system).text()

    return ask


def model_draft(ask: Ask, *, title: str, abstract: str) -> tuple[StoryDraft | None, str]:
    """The model's draft if it passes the checks, else (None, why not)."""
    prompt = PROMPT.format(title=plain_text(title), abstract=plain_text(abstract))
    try:
        answer = ask(SYSTEM_PROMPT, prompt)
    except (
        Exception
    ) as exc:  # each llm plugin raises its own errors: any means "use the extractive draft"
        return None, f"the model failed: {exc.__class__.__name__}: {exc}"
    try:
        draft = _parse(answer)
    except (ValueError, json.JSONDecodeError) as exc:
        return None, f"the model's answer is not a usable draft ({exc})"
    found = problems(draft, title=title, abstract=abstract)
    if found:
        return None, "; ".join(found)
    return draft, ""


# --- filling the issue ---------------------------------------------------------------


def digest(entry: PaperEntry) -> str:
    """A fingerprint of a story's words: an edit changes it."""
    words = json.dumps(
        [entry.headline, entry.why_it_matters, entry.details, entry.takeaway], ensure_ascii=False
    )
    return hashlib.sha256(words.encode()).hexdigest()[:16]


def has_story(entry: PaperEntry) -> bool:
    return bool(entry.headline or entry.why_it_matters or entry.details or entry.takeaway)


def fill_drafts(
    issue: IssueFile,
    papers: Mapping[int, Paper],
    settings: StoriesSettings,
    *,
    ask: Ask | None = None,
) -> tuple[IssueFile, DraftReport]:
    """The issue with a draft story for each featured paper without one; drafts the
    editor has edited lose their mark. ``ask`` overrides the configured model."""
    report = DraftReport()
    if ask is None and settings.model and settings.drafts:
        needs = [e for e in issue.papers if e.featured and not has_story(e)]
        ask = llm_model(settings.model) if needs else None
    entries: list[PaperEntry] = []
    for entry in issue.papers:
        if entry.draft is not None and entry.draft.digest != digest(entry):
            entry = entry.model_copy(update={"draft": None})  # edited: the editor's now
        if entry.featured and not has_story(entry) and settings.drafts:
            entry = _drafted(entry, papers[entry.id], ask, settings.model, report)
        entries.append(entry)
    return issue.model_copy(update={"papers": entries}), report


def _drafted(
    entry: PaperEntry, paper: Paper, ask: Ask | None, model: str, report: DraftReport
) -> PaperEntry:
    draft: StoryDraft | None = None
    by = EXTRACTIVE
    # as the email shows them: a record stored before ingest cleaned it may hold TeX
    title, abstract = clean_tex(scrub(paper.title)), clean_tex(scrub(paper.abstract))
    if ask is not None:
        draft, why_not = model_draft(ask, title=title, abstract=abstract)
        if draft is None:
            report.notes.append(
                f"paper {entry.id}: the {model or 'model'} draft was not used ({why_not}); "
                "the extractive draft stands in."
            )
        else:
            by = f"model:{model}" if model else "model"
    if draft is None:
        draft = extractive_draft(title, abstract)
    if not (draft.headline or draft.details or draft.takeaway):
        return entry
    report.drafted.append(entry.id)
    filled = entry.model_copy(
        update={
            "headline": draft.headline,
            "why_it_matters": draft.why_it_matters,
            "details": list(draft.details),
            "takeaway": draft.takeaway,
        }
    )
    return filled.model_copy(update={"draft": DraftMark(by=by, digest=digest(filled))})


def unreviewed(issue: IssueFile) -> list[int]:
    """Featured papers whose story is still a draft nobody has edited or accepted (a paper
    no longer featured does not show its story, so its draft waits unseen)."""
    return [e.id for e in issue.papers if e.draft is not None and e.featured]
