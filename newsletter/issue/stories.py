"""Story drafts: a headline, why it matters, the details and a takeaway, from the abstract.

For each featured paper whose story the editor has not written, compose fills a draft:

- extractive (the default, offline and deterministic): the title as headline (cut to
  70 characters at a subtitle or a word), the relevance or background statement as the
  why-it-matters line, the result sentences that carry figures as the details, and the
  conclusion as the takeaway;
- with ``[stories] model = "..."``, a language model through the `llm` library (any
  model its plugins offer). Its draft is checked: every figure in it must be in the
  paper's abstract or title, the headline must fit, and there must be 2 to 5 details;
  otherwise the extractive draft is used and compose says why. The extractive draft
  is held to the figure rule too: one that breaks it is not written, and compose
  says so.

A draft carries a ``draft`` mark in issue.json (who wrote it and a digest of its
words). It stays a draft until the editor edits any of its words (the digest no longer
matches) or deletes the mark; `slice compose` counts the unreviewed ones. The draft
itself, the extractive one and the checks are in `newsletter.issue.storydraft`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from newsletter.core.errors import ComposeError
from newsletter.core.models import Paper
from newsletter.core.settings import StoriesSettings
from newsletter.issue.abstracts import invented_numbers
from newsletter.issue.issuefile import DraftMark, IssueFile, PaperEntry
from newsletter.issue.storydraft import (
    EXTRACTIVE,
    StoryDraft,
    draft_words,
    extractive_draft,
    problems,
)
from newsletter.papers.text import clean_tex, reading_text, scrub


@dataclass
class DraftReport:
    """What filling the drafts did: how many were drafted, and what the editor should know."""

    drafted: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # why the model is not asked for the rest of this issue (it did not answer in time)
    not_asked: str = ""


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


class ModelTimeoutError(Exception):
    """The model did not answer in the time `[stories] timeout` gives it."""


def within(seconds: float, ask: Ask, system: str, prompt: str) -> str:
    """``ask``'s answer, or ModelTimeoutError after ``seconds``.

    No llm plugin offers a way to stop a call, so it runs on a daemon thread that is
    left to finish (or to end with the process) when time is up.
    """
    done = threading.Event()
    result: list[str] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(ask(system, prompt))
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="story-draft", daemon=True).start()
    if not done.wait(seconds):
        raise ModelTimeoutError(f"no answer within {seconds:g} s")
    if failure:
        raise failure[0]
    return result[0]


def model_draft(
    ask: Ask, *, title: str, abstract: str, timeout: float
) -> tuple[StoryDraft | None, str]:
    """The model's draft if it passes the checks, else (None, why not).

    Raises ModelTimeoutError when the model does not answer within ``timeout`` seconds.
    """
    prompt = PROMPT.format(title=reading_text(title), abstract=reading_text(abstract))
    try:
        answer = within(timeout, ask, SYSTEM_PROMPT, prompt)
    except ModelTimeoutError:
        raise
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
            entry = _drafted(entry, papers[entry.id], ask, settings, report)
            if report.not_asked:
                ask = None  # a model that kept one story waiting is not asked for the next
        entries.append(entry)
    return issue.model_copy(update={"papers": entries}), report


def _drafted(
    entry: PaperEntry,
    paper: Paper,
    ask: Ask | None,
    settings: StoriesSettings,
    report: DraftReport,
) -> PaperEntry:
    draft: StoryDraft | None = None
    by = EXTRACTIVE
    model = settings.model
    # as the email shows them: a record stored before ingest cleaned it may hold TeX
    title, abstract = clean_tex(scrub(paper.title)), clean_tex(scrub(paper.abstract))
    if ask is None and report.not_asked:
        report.notes.append(
            f"paper {entry.id}: {model or 'the model'} was not asked ({report.not_asked}); "
            "the extractive draft stands in."
        )
    if ask is not None:
        try:
            draft, why_not = model_draft(
                ask, title=title, abstract=abstract, timeout=settings.timeout
            )
        except ModelTimeoutError as exc:
            draft, why_not = None, str(exc)
            report.not_asked = (
                f"it gave no answer within {settings.timeout:g} s for paper {entry.id}"
            )
        if draft is None:
            report.notes.append(
                f"paper {entry.id}: the {model or 'model'} draft was not used ({why_not}); "
                "the extractive draft stands in."
            )
        else:
            by = f"model:{model}" if model else "model"
    if draft is None:
        draft = extractive_draft(title, abstract)
        # the extractive draft copies the abstract's words, but is held to the same rule
        invented = invented_numbers(draft_words(draft), reading_text(f"{title}\n\n{abstract}"))
        if invented:
            report.notes.append(
                f"paper {entry.id}: no story drafted (its draft had figures not in the "
                f"abstract: {', '.join(invented)}); write its headline and details in issue.json."
            )
            return entry
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
