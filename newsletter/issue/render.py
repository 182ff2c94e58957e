"""Rendering an issue: issue.json + papers -> email HTML, web HTML, plain text, message.json.

All of it happens in memory; `newsletter.issue.compose` writes the files only when every
part rendered. Templates come from the project's templates/ first, then the
package's (``email/issue.mjml`` and its partials, ``email/issue.txt``). A broken
template is a `TemplateError` naming the template file, its line, and the Jinja or
MJML problem.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, TemplateSyntaxError
from jinja2 import TemplateError as JinjaError
from markupsafe import Markup

from newsletter.core.errors import MjmlError, TemplateError
from newsletter.core.models import Paper
from newsletter.core.settings import Settings
from newsletter.issue.cards import (
    PaperCard,
    date_label,
    editor_html,
    make_card,
    range_label,
)
from newsletter.issue.htmlmail import render_mjml
from newsletter.issue.issuefile import ITEM_KINDS, IssueFile
from newsletter.issue.outbox import (
    BASE_URL,
    FIRST_NAME,
    GREETING,
    UNSUBSCRIBE_URL,
    RenderedIssue,
    strip_placeholders,
)
from newsletter.issue.storydraft import headline_from_title
from newsletter.issue.templating import PACKAGE_TEMPLATES, template_environment
from newsletter.papers.text import one_line

EMAIL_TEMPLATE = "email/issue.mjml"
TEXT_TEMPLATE = "email/issue.txt"


@dataclass(frozen=True)
class Rendered:
    email_html: str
    web_html: str
    text: str
    message: RenderedIssue

    @property
    def sizes(self) -> dict[str, int]:
        return {
            "email.html": len(self.email_html.encode()),
            "issue.html": len(self.web_html.encode()),
            "issue.txt": len(self.text.encode()),
        }


def _braces_safe(value: Any) -> Any:
    """Jinja ``finalize`` for MJML: every printed value escaped, braces as references.

    Nothing printed into the MJML can then look like leftover template syntax, which
    the MJML lint (rightly) refuses.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    escaped = value if isinstance(value, Markup) else Markup.escape(value)
    return Markup(str(escaped).replace("{", "&#123;").replace("}", "&#125;"))  # noqa: S704


def _plural(n: int, kind: str) -> str:
    one, many, _ = ITEM_KINDS.get(kind, (kind, f"{kind}s", ""))
    return f"{n} {one if n == 1 else many}"


def plus_line(items_by_kind: Mapping[str, int], papers: int) -> str:
    """ "Plus: 4 new datasets, 6 cleared devices & 4 new papers" (empty if nothing to count)."""
    parts = [_plural(n, kind) for kind, n in items_by_kind.items() if n]
    if papers:
        parts.append(f"{papers} new paper{'s' if papers != 1 else ''}")
    if not parts:
        return ""
    if len(parts) == 1:
        return f"Plus: {parts[0]}"
    return "Plus: " + ", ".join(parts[:-1]) + " & " + parts[-1]


def _headline(card: PaperCard) -> str:
    return card.headline or card.title_text


def default_subject(cards: list[PaperCard], limit: int = 70) -> str:
    """The featured headlines that fit in ``limit`` characters: "First + Second", or the
    first alone (shortened at a subtitle or a word if it must be)."""
    stories = [c for c in cards if c.featured] or cards
    if not stories:
        return ""
    heads = [_headline(c) for c in stories[:2]]
    subject = headline_from_title(heads[0], limit)
    if len(heads) > 1:
        second = headline_from_title(heads[1], limit)
        if len(subject) + 3 + len(second) <= limit:
            subject += f" + {second}"
    return subject


def default_preheader(
    cards: list[PaperCard],
    *,
    subject: str,
    intro: str,
    plus: str,
    limit: int = 140,
    subject_chars: int = 70,
) -> str:
    """The inbox preview line: the intro, else what the subject leaves out (the other
    headlines, why the top story matters, the "Plus:" count); never the subject again,
    not even the whole of a headline the subject shortened."""
    if intro:
        return _shorten(intro, limit)
    stories = [c for c in cards if c.featured] or cards

    def in_subject(head: str) -> bool:
        shortened = headline_from_title(head, subject_chars)
        return head in subject or subject in head or shortened in subject

    parts = [h for h in (_headline(c) for c in stories[:3]) if not in_subject(h)]
    if stories and stories[0].why_it_matters and not parts:
        parts.append(stories[0].why_it_matters)
    if plus:
        parts.append(plus)
    text = " · ".join(parts)
    if text.startswith(subject):
        text = text[len(subject) :].lstrip(" ·")
    return _shorten(text, limit)


def _header_safe(text: str) -> str:
    """One line, no control characters: fit for a Subject header."""
    return one_line(re.sub(r"[\x00-\x1f\x7f]", " ", strip_placeholders(text)))


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"


def build_context(
    settings: Settings,
    issue: IssueFile,
    *,
    papers: Mapping[int, Paper],
    preprints: Mapping[int | None, Paper],
) -> dict[str, Any]:
    """Everything the templates see, except the per-copy part (``web``, ``reader``, ``links``)."""
    cfg = settings.compose
    cards = [
        make_card(
            papers[e.id],
            abstract_chars=cfg.abstract_chars,
            max_authors=cfg.max_authors,
            preprint=preprints.get(e.id),
            score=e.score,
            featured=e.featured,
            headline=e.headline,
            why_it_matters=e.why_it_matters,
            details=e.details,
            takeaway=e.takeaway,
            note=e.note,
        )
        for e in issue.papers
    ]
    stories = [c for c in cards if c.featured]
    rest = [c for c in cards if not c.featured]
    sections: dict[str, list[dict[str, str]]] = {}
    for item in issue.items:
        sections.setdefault(item.kind, []).append(
            {
                "title": one_line(strip_placeholders(item.title)),
                "url": item.url,
                "text": strip_placeholders(item.text.strip()),
                "source": one_line(strip_placeholders(item.source)),
            }
        )
    subject = (
        _header_safe(issue.subject)
        or _header_safe(default_subject(cards, cfg.subject_chars))
        or (f"{settings.newsletter.name} #{issue.number}")
    )
    base = BASE_URL  # resolved at send time: the outbox holds no absolute URL of the site
    web_url = f"{base}/issues/{issue.id}"
    intro_text = one_line(strip_placeholders(issue.intro))
    plus = plus_line({k: len(v) for k, v in sections.items()}, len(rest))
    preheader = _header_safe(issue.preheader) or _header_safe(
        default_preheader(
            cards,
            subject=subject,
            intro=intro_text,
            plus=plus,
            subject_chars=cfg.subject_chars,
        )
    )
    nl = settings.newsletter
    return {
        "newsletter": {
            "name": nl.name,
            "tagline": nl.tagline,
            "language": nl.language,
            "postal_address": nl.postal_address,
            "base_url": base,
        },
        "issue": {
            "id": issue.id,
            "number": issue.number,
            "date": date_label(issue.date),  # "Nov 30, 2026", as the site writes dates
            "window": range_label(issue.window.start, issue.window.end),
            "subject": subject,
            "preheader": preheader,
            "intro_html": editor_html(strip_placeholders(issue.intro)),
            "intro_text": strip_placeholders(issue.intro.strip()),
            "note_html": editor_html(strip_placeholders(issue.editor_note)),
            "note_text": strip_placeholders(issue.editor_note.strip()),
            "web_url": web_url,
            "plus_line": plus,
        },
        "stories": stories,
        "papers": rest,
        "sections": [
            {
                "kind": kind,
                "heading": ITEM_KINDS.get(kind, ("", "", kind.title()))[2],
                "items": items,
            }
            for kind, items in sections.items()
        ],
        "paper_count": len(cards),
    }


def _template_line(env: Environment, exc: BaseException) -> tuple[str, int | None]:
    """The template file and line an exception was raised at (Jinja rewrites the traceback)."""
    if isinstance(exc, TemplateSyntaxError):
        return exc.filename or exc.name or "?", exc.lineno
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith((".mjml", ".txt", ".html")):
            return frame.filename, frame.lineno
    return "?", None


def _locate(env: Environment, mjml: str, line: int) -> str:
    """Which template line produced line ``line`` of the rendered MJML (best effort)."""
    rendered = mjml.splitlines()[line - 1] if 0 < line <= len(mjml.splitlines()) else ""
    best: tuple[int, str] | None = None
    for name in env.list_templates(filter_func=lambda n: n.startswith("email/")):
        source, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        for number, text in enumerate(source.splitlines(), 1):
            pieces = [p.strip() for p in re.split(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", text)]
            pieces = [p for p in pieces if p]
            if not pieces:
                continue
            at = 0
            for piece in pieces:
                at = rendered.find(piece, at)
                if at < 0:
                    break
                at += len(piece)
            if at >= 0:
                weight = sum(len(p) for p in pieces)
                if best is None or weight > best[0]:
                    best = (weight, f"{filename}, line {number}")
    return best[1] if best else f"rendered MJML line {line}"


def _template_file(env: Environment, name: str) -> str:
    try:
        _, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    except JinjaError:
        return name
    return filename or name


def _render(env: Environment, name: str, context: Mapping[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except JinjaError as exc:
        filename, line = _template_line(env, exc)
        where = f"{filename}, line {line}" if line else filename
        raise TemplateError(f"{where}: {exc.__class__.__name__}: {exc.message or exc}") from exc


def _compile(env: Environment, mjml: str, copy: str) -> str:
    try:
        return render_mjml(mjml)
    except MjmlError as exc:
        first = exc.problems[0]
        line = getattr(first, "line", 1)
        message = getattr(first, "message", str(first))
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        where = _locate(env, mjml, line) if line else _template_file(env, EMAIL_TEMPLATE)
        raise TemplateError(f"{where}: MJML error in the {copy}: {message}{more}") from exc


def render_issue(
    settings: Settings,
    issue: IssueFile,
    *,
    papers: Mapping[int, Paper],
    preprints: Mapping[int | None, Paper],
    rendered_at: datetime,
    templates: Path | None = None,
) -> Rendered:
    """Render the three copies of an issue and its message.json, in memory."""
    project = templates if templates is not None else settings.templates_dir
    html_env = template_environment(project if project.is_dir() else None)
    html_env.finalize = _braces_safe
    text_env = template_environment(project if project.is_dir() else None)
    context = build_context(settings, issue, papers=papers, preprints=preprints)
    base = BASE_URL
    email = {
        **context,
        "web": False,
        "greeting": GREETING,
        "reader": {"first_name": FIRST_NAME},
        "links": {"unsubscribe": UNSUBSCRIBE_URL, "web": context["issue"]["web_url"], "home": base},
    }
    web = {
        **context,
        "web": True,
        "greeting": settings.newsletter.greeting_no_name,
        "reader": {"first_name": ""},
        "links": {"unsubscribe": "", "web": context["issue"]["web_url"], "home": base},
    }
    email_html = _compile(html_env, _render(html_env, EMAIL_TEMPLATE, email), "email")
    web_html = _compile(html_env, _render(html_env, EMAIL_TEMPLATE, web), "web copy")
    text = _render(text_env, TEXT_TEMPLATE, email)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    message = RenderedIssue(
        issue_id=issue.id,
        number=issue.number,
        subject=context["issue"]["subject"],
        preheader=context["issue"]["preheader"],
        date=issue.date.isoformat(),
        window_start=issue.window.start.isoformat(),
        window_end=issue.window.end.isoformat(),
        web_url=context["issue"]["web_url"],
        paper_count=context["paper_count"],
        rendered_at=rendered_at.isoformat(timespec="seconds"),
        greeting=settings.newsletter.greeting,
        greeting_no_name=settings.newsletter.greeting_no_name,
    )
    return Rendered(email_html=email_html, web_html=web_html, text=text, message=message)


__all__ = ["PACKAGE_TEMPLATES", "Rendered", "build_context", "plus_line", "render_issue"]
