"""`slice compose`: select the window's papers and render the issue into the outbox.

The steps stay apart: read the candidates from the store, `newsletter.issue.select` ranks
them (a pure function), issue.json records the selection and the editor's edits
(`newsletter.issue.issueedits`), then `newsletter.issue.render` renders everything in
memory. Only when every part has rendered are the files written (each to a temporary
name, then renamed: `newsletter.issue.finish`), so a broken template leaves the
previous render as it was.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from newsletter.core.errors import ComposeError, NewsletterError, NoPapersError
from newsletter.core.models import Issue, Paper, utcnow
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.core.words import plural
from newsletter.issue import choices, lifecycle, relevance
from newsletter.issue.candidates import (
    candidates_by_id,
    load_candidates,
    stored_scores,
    with_texts,
)
from newsletter.issue.choices import EditorModel
from newsletter.issue.finish import render_or_blame, write_atomically
from newsletter.issue.issueedits import apply_overrides, choices_of, fresh_issue
from newsletter.issue.issuefile import IssueFile, WindowDates, read_issue_file
from newsletter.issue.outbox import IssueFolder, preview_html
from newsletter.issue.render import Rendered
from newsletter.issue.select import Selection, SelectOptions
from newsletter.issue.select import select as select_papers
from newsletter.issue.stories import DraftReport, fill_drafts, unreviewed
from newsletter.issue.window import Window
from newsletter.papers.links import has_direct_link

log = logging.getLogger(__name__)

__all__ = ["ComposeResult", "compose_issue"]

# Gmail clips an HTML part over 102 KB (with headers and the text part counted); warn early.
CLIP_WARNING_BYTES = 90 * 1024


@dataclass
class ComposeResult:
    """What a compose did: the issue, where it went, and how the papers were chosen."""

    issue_id: str
    folder: IssueFolder
    issue: IssueFile
    selection: Selection
    rendered: Rendered
    reselected: bool
    model_terms: list[tuple[str, float]] = field(default_factory=list)
    sent_elsewhere: list[int] = field(default_factory=list)  # dropped from the kept draft
    max_papers: int = 10
    drafts: DraftReport = field(default_factory=DraftReport)
    unlinked: list[int] = field(default_factory=list)

    @property
    def unreviewed(self) -> list[int]:
        """Featured papers whose story is still an unreviewed draft."""
        return unreviewed(self.issue)

    @property
    def sizes(self) -> dict[str, int]:
        return self.rendered.sizes

    @property
    def warnings(self) -> list[str]:
        """Things the editor should know before sending."""
        out: list[str] = []
        size = self.sizes["email.html"]
        if size > CLIP_WARNING_BYTES:
            out.append(
                f"email.html is {size / 1024:.0f} KB: Gmail clips messages over 102 KB and hides "
                "the footer with the unsubscribe link; lower --max or [compose] abstract_chars."
            )
        if self.sent_elsewhere:
            ids = ", ".join(str(i) for i in self.sent_elsewhere)
            out.append(
                f"removed paper(s) {ids} from this draft: an issue sent since carried them "
                "(pin one with --pin ID to keep it anyway)."
            )
        short = sum(1 for s in self.selection.ranked if s.status == "off-topic")
        if short and len(self.selection.chosen) < self.max_papers:
            out.append(
                f"a short issue: {self.selection.floor_summary()} "
                "(--explain lists them; the profile's min_score and required set the floor)"
            )
        if not self.issue.papers:
            out.append(
                f"the issue lists no papers: none of the {len(self.selection.ranked)} candidates "
                "was chosen (--explain shows why); pin papers with --pin, widen [profile] terms, "
                "or start over with --reselect."
            )
        for pid in self.unlinked:
            out.append(
                f"paper {pid} has no DOI, PubMed, PMC or arXiv id and no URL: its title links to "
                "a search; add its DOI or url to the record and ingest it again."
            )
        out.extend(self.drafts.notes)
        return out

    @property
    def not_in_issue(self) -> list[int]:
        """Papers a fresh selection would take that the kept issue.json does not list."""
        listed = {p.id for p in self.issue.papers} | set(self.issue.excluded)
        return [s.paper_id for s in self.selection.chosen if s.paper_id not in listed]


def _editor_model(session: Session, issue_id: str, settings: Settings) -> EditorModel | None:
    """The model of the editor's past choices; trained once per history, then cached.

    The cache (outbox/.cache/editor-model.json) is keyed by the history itself, so
    composing the same week again reuses it and a new choice anywhere retrains.
    """
    if not settings.profile.learn_from_editor:
        return None
    rows = choices.history(session, except_issue=issue_id)
    if not any(choice in ("pinned", "excluded") for _i, _p, choice, _a in rows):
        return None  # only the profile's own picks on record: nothing the editor taught
    key = choices.history_key(rows)
    cache = settings.outbox_dir / ".cache" / "editor-model.json"
    try:
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return EditorModel.from_json(saved["model"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, or an unreadable one: train
    model = EditorModel.train(choices.training_set(session, except_issue=issue_id))
    if model is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key, "model": model.to_json()}), encoding="utf-8")
            os.replace(tmp, cache)
        except OSError:
            pass  # a cache that cannot be written only costs time
    return model


def prepare_editor_model(settings: Settings, store: Store) -> None:
    """Train (and cache) the model next week's compose will want, once an issue is sent.

    The history a compose learns from leaves out only the issue being composed, and next
    week's is not stored yet: so the model trained now on every issue's choices is the
    one its first compose finds in the cache, and that compose trains nothing (with two
    years of choices, about a third of its time). Any failure only costs that time.
    """
    try:
        with store.read() as session:
            _editor_model(session, "", settings)
    except (OSError, NewsletterError, SQLAlchemyError) as exc:
        log.warning("the editor model was not prepared for the next compose: %s", exc)


def _check_ids(session: Session, ids: Sequence[int], flag: str) -> None:
    if not ids:
        return
    found = set(session.exec(select(Paper.id).where(col(Paper.id).in_(list(ids)))))
    missing = [i for i in ids if i not in found]
    if missing:
        raise ComposeError(
            f"{flag} {missing[0]}: no paper with that id is stored; `slice papers` lists the ids."
        )


def _papers_of(
    session: Session, issue: IssueFile, folder: IssueFolder
) -> tuple[dict[int, Paper], dict[int | None, Paper]]:
    """The issue's papers by id, and the preprint of each that has one."""
    ids = [p.id for p in issue.papers]
    papers = {
        p.id: p
        for p in session.exec(select(Paper).where(col(Paper.id).in_(ids)))
        if p.id is not None
    }
    missing = [i for i in ids if i not in papers]
    if missing:
        raise ComposeError(
            f"{folder.selection}: paper {missing[0]} is not in the store; remove it from "
            "issue.json or run `slice compose --reselect`."
        )
    preprints = {
        p.published_version_id: p
        for p in session.exec(select(Paper).where(col(Paper.published_version_id).in_(ids)))
    }
    return papers, preprints


def compose_issue(
    settings: Settings,
    store: Store,
    *,
    window: Window,
    max_papers: int | None = None,
    pins: Sequence[int] = (),
    excludes: Sequence[int] = (),
    reselect: bool = False,
    now: datetime | None = None,
    explain: bool = False,
) -> ComposeResult:
    """Select and render the issue for ``window`` into ``outbox/<issue-id>/``.

    ``explain`` scores every candidate in full (for `--explain`); otherwise the ones
    that cannot reach the issue keep their stored scores (`newsletter.issue.select`).
    """
    issue_id = window.issue_id
    folder = IssueFolder.of(settings.outbox_dir, issue_id)
    limit = max_papers or settings.compose.max_papers
    clash = set(pins) & set(excludes)
    if clash:
        raise ComposeError(
            f"paper {min(clash)} is both pinned and excluded; drop one of the two flags."
        )

    profile = relevance.profile_of(settings)
    relevance.refresh_store(settings, store)  # score the papers stored since the last run
    with store.read() as session:
        row = session.get(Issue, issue_id)
        if row is not None and row.status not in lifecycle.REWRITABLE:
            raise ComposeError(
                f"issue {issue_id} is {row.status}; a sent issue is not composed again "
                "(compose another week with --week)."
            )
        _check_ids(session, pins, "--pin")
        _check_ids(session, excludes, "--exclude")
        existing = (
            read_issue_file(folder.selection)
            if folder.selection.is_file() and not reselect
            else None
        )
        stats = relevance.load_stats(session.connection(), profile)
        candidates = load_candidates(
            session,
            window,
            dated_sources=settings.compose.dated_sources,
            late_days=settings.compose.late_days,
            zone=settings.newsletter.tz,
            texts=False,  # selection reads the texts of the papers it scores in full
        )
        earlier = lifecycle.used_papers(session.connection(), issue_id)
        candidates = [p for p in candidates if p.id not in earlier or p.id in pins]
        gone: list[int] = []
        if existing is not None:
            # a paper an issue sent since this draft was composed is not news here any more
            gone = [p.id for p in existing.papers if p.id in earlier and p.id not in pins]
            existing = existing.model_copy(
                update={"papers": [p for p in existing.papers if p.id not in gone]}
            )
        if not candidates and existing is None:
            total = session.exec(select(func.count()).select_from(Paper)).one()
            raise NoPapersError(
                f"no papers published or first seen in {window}; {plural(total, 'paper')} "
                f"{'is' if total == 1 else 'are'} stored in all. "
                "Fetch papers with `slice fetch`, "
                "or choose another window with --week or --since/--until."
            )
        pinned_all = [*pins, *(existing.pinned if existing else [])]
        known = {p.id for p in candidates}
        candidates += [p for p in candidates_by_id(session, pinned_all) if p.id not in known]
        model = _editor_model(session, issue_id, settings)
        options = SelectOptions(
            max_papers=limit,
            per_source_cap=settings.compose.per_source_cap,
            pins=tuple(dict.fromkeys(pinned_all)),
            excludes=tuple(dict.fromkeys([*excludes, *(existing.excluded if existing else [])])),
            editor_weight=settings.profile.editor_weight,
            every=explain,
        )
        selection = select_papers(
            candidates,
            window,
            profile,
            options=options,
            editor=model,
            stats=stats,
            stored=stored_scores(session.connection(), candidates, profile, stats),
            complete=lambda papers: with_texts(session.connection(), papers),
        )
        number = lifecycle.next_number(session.connection())
        if existing is not None:
            issue = apply_overrides(
                existing, selection, pins=pins, excludes=excludes, max_papers=limit
            )
            # the folder and the window decide which issue this is, whatever the file says
            issue = issue.model_copy(
                update={
                    "id": issue_id,
                    "number": number,
                    "window": WindowDates(start=window.start, end=window.end),
                }
            )
        else:
            issue = fresh_issue(
                selection,
                issue_id=issue_id,
                number=number,
                featured=settings.compose.featured,
                window=window,
                pins=pins,
                excludes=excludes,
            )
        papers, preprints = _papers_of(session, issue, folder)

    issue, drafts = fill_drafts(issue, papers, settings.stories)
    rendered = render_or_blame(
        settings, issue, papers=papers, preprints=preprints, rendered_at=now or utcnow()
    )
    with store.write() as session:
        # The row first, conditionally: a send that got there first keeps its issue, and
        # no file of a sending or sent issue is touched. The files are written while the
        # write lock (SQLite) or the row's lock (PostgreSQL) is held.
        lifecycle.save_draft(
            session.connection(),
            lifecycle.DraftRow(
                issue_id=issue_id,
                number=issue.number,
                subject=rendered.message.subject,
                window_start=window.start,
                window_end=window.end,
                composed_at=now or utcnow(),
            ),
        )
        choices.record(session, issue_id, choices_of(issue, selection).items())
        write_atomically(
            {
                folder.email_html: rendered.email_html,
                folder.preview: preview_html(
                    rendered.email_html, rendered.message, settings.web.base_url
                ),
                folder.text: rendered.text,
                folder.web_html: rendered.web_html,
                folder.message: rendered.message.to_json(),
                folder.selection: issue.to_json(),
            }
        )
    return ComposeResult(
        issue_id=issue_id,
        folder=folder,
        issue=issue,
        selection=selection,
        rendered=rendered,
        reselected=existing is None,
        model_terms=model.top_terms() if model else [],
        drafts=drafts,
        unlinked=[e.id for e in issue.papers if not has_direct_link(papers[e.id])],
        sent_elsewhere=gone,
        max_papers=limit,
    )


def parse_day(value: str, flag: str) -> date:
    """A --since/--until date; a ComposeError saying the format otherwise."""
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ComposeError(f"{flag} {value!r} is not a date; write it like 2025-06-09.") from None


def window_from_options(
    *, week: str | None, since: str | None, until: str | None, today: date
) -> Window:
    """The window the flags ask for; the last complete ISO week by default."""
    from newsletter.issue.window import last_complete_week, week_window

    if week and (since or until):
        raise ComposeError("use either --week or --since/--until, not both.")
    if week:
        try:
            return week_window(week)
        except ValueError as exc:
            raise ComposeError(f"--week: {exc}.") from None
    if since or until:
        if not (since and until):
            raise ComposeError(
                "--since and --until go together: give both dates (e.g. --since 2025-06-01 --until 2025-06-07)."
            )
        start, end = parse_day(since, "--since"), parse_day(until, "--until")
        if end < start:
            raise ComposeError(f"--until {end} is before --since {start}; swap them.")
        if (end - start).days > 366:
            raise ComposeError("the window is longer than a year; choose a shorter one.")
        return Window(start, end)
    return last_complete_week(today)
