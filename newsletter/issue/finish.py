"""The last steps of a compose: the rendered issue checked whole, then written.

`render_or_blame` renders the issue and, when it breaks or comes out cut short, names
the paper that broke it rather than the package template; `write_atomically` writes
every file under a temporary name first, then renames them all into place.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime
from pathlib import Path

from newsletter.core.errors import ComposeError, MjmlError, TemplateError
from newsletter.core.models import Paper
from newsletter.core.settings import Settings
from newsletter.issue.issuefile import IssueFile, PaperEntry
from newsletter.issue.outbox import UNSUBSCRIBE_URL
from newsletter.issue.render import Rendered, render_issue
from newsletter.papers.text import plain_text


def write_atomically(files: dict[Path, str]) -> None:
    """Write every file under a temporary name first, then rename them all into place.

    A full or read-only outbox is one ComposeError, and no temporary file is left.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temps.append((tmp, path))  # before it exists: a failed write is removed too
            with tmp.open("w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, path in temps:
            os.replace(tmp, path)
    except OSError as exc:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        folder = next(iter(files)).parent if files else Path()
        raise ComposeError(
            f"cannot write the outbox ({folder}: {exc.strerror or exc}); free some space or "
            "make it writable, then compose again. The previous render is unchanged."
        ) from exc


def _complete(rendered: Rendered) -> str | None:
    """Why a rendered issue is not whole (a cut email loses its footer), or None."""
    for name, body in (("email.html", rendered.email_html), ("issue.txt", rendered.text)):
        if UNSUBSCRIBE_URL not in body:
            return f"{name} ends before its footer (the unsubscribe link is missing)"
    if "</html>" not in rendered.email_html[-200:]:
        return "email.html is cut short"
    return None


def render_or_blame(
    settings: Settings,
    issue: IssueFile,
    *,
    papers: dict[int, Paper],
    preprints: dict[int | None, Paper],
    rendered_at: datetime,
) -> Rendered:
    """Render the issue; when it breaks, name the paper that broke it (not the template)."""
    problem: str
    try:
        rendered = render_issue(
            settings, issue, papers=papers, preprints=preprints, rendered_at=rendered_at
        )
        incomplete = _complete(rendered)
        if incomplete is None:
            return rendered
        problem = incomplete
        error: ComposeError | None = None
    except TemplateError as exc:
        problem, error = str(exc), exc

    def fails(entries: list[PaperEntry]) -> str | None:
        alone = issue.model_copy(update={"papers": entries})
        try:
            return _complete(
                render_issue(
                    settings, alone, papers=papers, preprints=preprints, rendered_at=rendered_at
                )
            )
        except TemplateError as exc:
            cause = exc.__cause__
            # the MJML problem itself: the template is fine, the paper's text is not
            return str(cause.problems[0]) if isinstance(cause, MjmlError) else str(exc)

    # Without papers it still fails: the templates or the editor's text are at fault.
    # Otherwise the paper that fails on its own is the culprit.
    if issue.papers and fails([]) is None:
        for entry in issue.papers:
            why = fails([entry])
            if why is None:
                continue
            title = plain_text(papers[entry.id].title)[:80]
            raise ComposeError(
                f"paper {entry.id} ({title!r}) breaks the email: {why}; "
                f"leave it out with `slice compose --exclude {entry.id}`."
            ) from error
    if error is not None:
        raise error
    raise ComposeError(f"the rendered issue is not whole: {problem}.")
