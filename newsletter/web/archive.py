"""The public archive: papers (GET / and /papers), sent issues, and the Atom feed.

Every page is plain server-rendered HTML from the templates in ``web/``
(the project's templates/ override them). Whatever a visitor puts in the URL,
the answer is a normal page: bad parameters are dropped with a note.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlmodel import Session, col, select

from newsletter.core.errors import IssueNotFoundError
from newsletter.core.models import Issue, IssueStatus, Paper, utcnow
from newsletter.core.settings import Settings
from newsletter.issue.outbox import (
    FIRST_NAME,
    UNSUBSCRIBE_URL,
    IssueFolder,
    RenderedIssue,
    resolve_links,
)
from newsletter.papers.links import paper_link
from newsletter.papers.search import (
    PER_PAGE_CHOICES,
    SearchPage,
    SearchParams,
    known_sources,
    parse_params,
    search_papers,
)
from newsletter.papers.text import clean_tex, plain_text, sanitize
from newsletter.web.issuecopy import framed
from newsletter.web.pagecache import PageCache

router = APIRouter()

SOURCE_LABELS = {
    "arxiv": "arXiv",
    "pubmed": "PubMed",
    "medrxiv": "medRxiv",
    "biorxiv": "bioRxiv",
    "rss": "RSS",
    "file": "File",
}
PUBLIC_STATUSES = (IssueStatus.SENT.value, IssueStatus.SENDING.value)
_MAX_AUTHORS = 8
# Three lines of the narrowest phone (320 px, ~38 characters a line) hold at least this much;
# a script on the page hides the toggle under any longer abstract that still fits its screen.
LONG_ABSTRACT_CHARS = 110


@dataclass(frozen=True)
class PaperView:
    """A paper as the archive shows it."""

    id: int
    title: Markup
    url: str
    authors: str
    source: str
    source_label: str
    kind: str
    published: date
    journal: str
    abstract: Markup
    long_abstract: bool  # more than a phone's three lines: it gets a "show the whole" toggle


def inline_markup(text: str) -> Markup:
    """Title or abstract text with only <i> <b> <sub> <sup> kept (as the paper record allows),
    and TeX made readable (a record stored before ingest cleaned it may hold some, as the
    email's cards allow for too)."""
    return Markup(clean_tex(sanitize(text)))  # noqa: S704 - sanitized by nh3


def author_line(authors: list[str]) -> str:
    names = [str(a) for a in authors if str(a).strip()]
    if len(names) > _MAX_AUTHORS:
        return (
            ", ".join(names[: _MAX_AUTHORS - 1])
            + f" … {names[-1]} (+{len(names) - _MAX_AUTHORS} more)"
        )
    return ", ".join(names)


def view(paper: Paper) -> PaperView:
    return PaperView(
        id=paper.id or 0,
        title=inline_markup(paper.title),
        url=paper_link(paper),
        authors=author_line(paper.authors),
        source=paper.source,
        source_label=SOURCE_LABELS.get(paper.source, paper.source),
        kind=paper.kind,
        published=paper.published,
        journal=paper.journal,
        abstract=inline_markup(paper.abstract),
        long_abstract=len(plain_text(paper.abstract)) > LONG_ABSTRACT_CHARS,
    )


def _render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    template = request.app.state.templates.get_template(name)
    html = template.render(newsletter=settings.newsletter, request=request, **context)
    return HTMLResponse(html, status_code=status_code)


def _session(request: Request) -> Session:
    return request.app.state.store.read()  # type: ignore[no-any-return]


@router.get("/", response_class=HTMLResponse)
@router.get("/papers", response_class=HTMLResponse)
async def papers(request: Request) -> Response:
    """The stored papers, newest first, with search, filters and pages.

    Kept as rendered until the papers change (`newsletter.web.pagecache`): a page
    in the cache is answered on the event loop after one read of the change counter.
    """
    cache: PageCache = request.app.state.page_cache
    key = request.scope["path"] + "?" + request.scope["query_string"].decode("latin-1")
    version = await cache.current_version()
    body = cache.get(key, version)
    if body is None:
        params, notes = parse_params(request.query_params)
        canonical = params.query_string()
        if not notes and _pairs(request.url.query) != _pairs(canonical.lstrip("?")):
            # a submitted form sends every field, empty or not: point at the short URL to share
            return RedirectResponse(request.url.path + canonical.rstrip("?"), status_code=303)
        body = await cache.render(key, version, lambda: _papers_page(request, params, notes))
    return HTMLResponse(body)


def _papers_page(request: Request, params: SearchParams, notes: list[str]) -> bytes:
    settings: Settings = request.app.state.settings
    with _session(request) as session:
        page: SearchPage = search_papers(
            session, params, on_topic_only=settings.web.archive_on_topic_only
        )
        sources = known_sources(session)
        any_papers = bool(page.total) or session.scalar(select(Paper.id).limit(1)) is not None
    if params.source and params.source not in sources:
        sources.append(params.source)
    response = _render(
        request,
        "web/index.html",
        page=page,
        params=params,
        notes=[*notes, *page.notes],
        papers=[view(p) for p in page.papers],
        sources=[(s, SOURCE_LABELS.get(s, s)) for s in sources],
        per_page_choices=PER_PAGE_CHOICES,
        any_papers=any_papers,
    )
    return bytes(response.body)


def _pairs(query: str) -> list[tuple[str, str]]:
    return sorted(parse_qsl(query, keep_blank_values=True))


def _sent_issues(session: Session) -> list[Issue]:
    stmt = (
        select(Issue)
        .where(col(Issue.status).in_(PUBLIC_STATUSES))
        .order_by(col(Issue.window_start).desc(), col(Issue.number).desc())
    )
    return list(session.exec(stmt))


def _rendered(settings: Settings, issue_id: str) -> RenderedIssue | None:
    try:
        folder = IssueFolder.of(settings.outbox_dir, issue_id)
        return RenderedIssue.from_json(folder.message.read_text(encoding="utf-8"))
    except (IssueNotFoundError, OSError, ValueError, KeyError, TypeError):
        return None


@router.get("/issues", response_class=HTMLResponse)
def issues(request: Request) -> HTMLResponse:
    """Every issue that has gone out, newest first."""
    settings: Settings = request.app.state.settings
    with _session(request) as session:
        rows = _sent_issues(session)
    entries = [(issue, _rendered(settings, issue.id)) for issue in rows]
    return _render(request, "web/issues.html", entries=entries)


@router.get("/issues/{issue_id:path}", response_class=HTMLResponse)
def issue_page(request: Request, issue_id: str) -> HTMLResponse:
    """The web copy of a sent issue, as compose wrote it (no reader's data in it)."""
    settings: Settings = request.app.state.settings
    with _session(request) as session:
        issue = session.get(Issue, issue_id) if len(issue_id) <= 64 else None
    if issue is None or issue.status not in PUBLIC_STATUSES:
        return _render(request, "web/issue_missing.html", 404, issue_id=issue_id, reason="unknown")
    try:
        folder = IssueFolder.of(settings.outbox_dir, issue.id)
        html = folder.web_html.read_text(encoding="utf-8")
    except (IssueNotFoundError, OSError, UnicodeDecodeError):
        return _render(request, "web/issue_missing.html", 404, issue_id=issue.id, reason="files")
    # The web copy has no placeholders; should one slip in, it gets no reader's value.
    html = html.replace(UNSUBSCRIBE_URL, f"{settings.web.base_url}/").replace(FIRST_NAME, "there")
    html = resolve_links(html, settings.web.base_url)  # the outbox holds no absolute site URL
    return _render(request, "web/issue.html", issue=issue, copy=framed(html), signup_after=True)


@dataclass(frozen=True)
class FeedEntry:
    issue: Issue
    rendered: RenderedIssue | None
    url: str
    updated: str  # RFC 3339, UTC


def _atom_time(moment: datetime | None) -> str:
    moment = moment or utcnow()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def datetime_attr(moment: date) -> str:
    """A valid HTML ``datetime`` value: a date as is, a moment in UTC to the second."""
    if isinstance(moment, datetime):
        return _atom_time(moment)
    return moment.isoformat()


@router.get("/feed.xml")
def feed(request: Request) -> Response:
    """An Atom feed of the sent issues."""
    settings: Settings = request.app.state.settings
    with _session(request) as session:
        rows = _sent_issues(session)[:50]
    entries = [
        FeedEntry(
            issue=issue,
            rendered=_rendered(settings, issue.id),
            url=f"{settings.web.base_url}/issues/{issue.id}",
            updated=_atom_time(issue.sent_at or issue.send_started_at or issue.composed_at),
        )
        for issue in rows
    ]
    updated = max((e.updated for e in entries), default=_atom_time(None))
    template = request.app.state.templates.get_template("web/feed.xml")
    body = template.render(
        newsletter=settings.newsletter,
        base_url=settings.web.base_url,
        entries=entries,
        updated=updated,
    )
    return Response(body, media_type="application/atom+xml; charset=utf-8")
