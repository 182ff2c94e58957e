"""`slice compose`: select the week's papers and render the issue into outbox/."""

from __future__ import annotations

import webbrowser
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from newsletter.cli.base import err, out, plural, state

if TYPE_CHECKING:  # the selector and renderer load when a command runs, not for --help
    from newsletter.issue.compose import ComposeResult


def explain_table(result: ComposeResult) -> Table:
    from newsletter.papers.text import plain_text as plain

    """Every candidate with its score and the terms (and other parts) that earned it."""
    table = Table(title=f"Candidates for {result.selection.window}", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("status")
    table.add_column("score", justify="right")
    table.add_column("source")
    table.add_column("title, and what earned the score", overflow="fold")
    for s in result.selection.ranked:
        cell = Text(plain(s.paper.title))
        for part in s.parts:
            cell.append(f"\n  {part.points:+.2f}  {part.label}", style="dim")
        if s.reason:
            cell.append(f"\n  {s.reason}", style="italic")
        table.add_row(str(s.paper_id), s.status, f"{s.score:.2f}", s.paper.source, cell)
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def compose(
        ctx: typer.Context,
        week: Annotated[
            str | None,
            typer.Option(
                metavar="YYYY-Www",
                help="ISO week, e.g. 2025-W24 (default: the last complete week).",
            ),
        ] = None,
        since: Annotated[
            str | None,
            typer.Option(metavar="DATE", help="First day of a custom window (YYYY-MM-DD)."),
        ] = None,
        until: Annotated[
            str | None,
            typer.Option(metavar="DATE", help="Last day of a custom window (YYYY-MM-DD)."),
        ] = None,
        max_papers: Annotated[
            int | None,
            typer.Option(
                "--max",
                metavar="N",
                min=1,
                help="Papers in the issue (default: compose.max_papers).",
            ),
        ] = None,
        pin: Annotated[
            list[int] | None,
            typer.Option(metavar="ID", help="Always include this paper id (repeatable)."),
        ] = None,
        exclude: Annotated[
            list[int] | None,
            typer.Option(metavar="ID", help="Never include this paper id (repeatable)."),
        ] = None,
        reselect: Annotated[
            bool,
            typer.Option(
                "--reselect", help="Select again from scratch, dropping the edits in issue.json."
            ),
        ] = False,
        explain: Annotated[
            bool,
            typer.Option(
                "--explain", help="Print every candidate's score and the terms that earned it."
            ),
        ] = False,
        open_: Annotated[
            bool,
            typer.Option(
                "--open",
                help="Open the email's preview (filled in for a sample reader) in a browser.",
            ),
        ] = False,
    ) -> None:
        """Select the window's papers and render the issue into outbox/<issue>/; prints the issue id."""
        app_state = state(ctx)
        settings = app_state.settings()
        now = datetime.now(UTC)
        from newsletter.core.timezone import local_today
        from newsletter.issue.compose import compose_issue, window_from_options

        # the editor's week: Monday 06:00 in Tokyo is still Sunday in UTC
        today = local_today(now, settings.newsletter.tz)
        window = window_from_options(week=week, since=since, until=until, today=today)
        result = compose_issue(
            settings,
            app_state.store(),
            window=window,
            max_papers=max_papers,
            pins=pin or [],
            excludes=exclude or [],
            reselect=reselect,
            now=now,
            explain=explain,
        )
        if explain:
            out().print(explain_table(result))
            out().print(result.selection.floor_summary())
            if result.model_terms:
                learned = ", ".join(f"{w} {c:+.2f}" for w, c in result.model_terms)
                out().print(
                    f"Editor model ({result.selection.learned_from} past choices): {learned}"
                )
        size = result.sizes["email.html"] / 1024
        kept = "" if result.reselected else " (kept your edits in issue.json)"
        if not result.reselected and result.not_in_issue:
            ids = " ".join(str(i) for i in result.not_in_issue)
            kept += (
                f"\n{plural(len(result.not_in_issue), 'newer candidate')} "
                f"{'is' if len(result.not_in_issue) == 1 else 'are'} not in issue.json ({ids}); "
                "add one with --pin ID, or start over with --reselect."
            )
        err().print(
            f"Issue #{result.issue.number}: {plural(result.rendered.message.paper_count, 'paper')}, "
            f"email.html {size:.1f} KB{kept}\n"
            f"Subject: {result.rendered.message.subject}\n"
            f"Review {result.folder.preview}, edit {result.folder.selection}, then "
            f"`slice send {result.issue_id} --dry-run`."
        )
        if result.unreviewed:
            ids = ", ".join(str(i) for i in result.unreviewed)
            n = len(result.unreviewed)
            err().print(
                f"{n} story draft{'s are' if n != 1 else ' is'} unreviewed (papers {ids}): "
                'edit their words in issue.json, or delete their "draft" mark to accept them.'
            )
        for warning in result.warnings:
            err().print(f"Warning: {warning}", style="yellow")
        if open_:
            webbrowser.open(result.folder.preview.resolve().as_uri())
        typer.echo(result.issue_id)
