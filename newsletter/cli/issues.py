"""`slice issues` (drafts and sent issues) and `slice discard ISSUE` (a draft)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from newsletter.cli.base import err, out, plural, state


def register(app: typer.Typer) -> None:
    @app.command()
    def issues(
        ctx: typer.Context,
        all_: Annotated[bool, typer.Option("--all", help="List discarded drafts too.")] = False,
    ) -> None:
        """List the issues: drafts and sent ones, with status, window, papers and deliveries."""
        from newsletter.issue.lifecycle import list_issues

        app_state = state(ctx)
        rows = list_issues(app_state.store(), include_discarded=all_)
        if not rows:
            err().print("No issues yet: `slice compose` makes the first draft.")
            return
        # no borders: the columns below need the room in an 80-column terminal
        table = Table(title_justify="left", box=None)
        # the id is what `slice send` and `slice discard` take: never cut, in any width
        table.add_column("issue", no_wrap=True, min_width=max(len(r.id) for r in rows))
        table.add_column("#", justify="right")
        table.add_column("status")
        table.add_column("window", min_width=10)  # a whole date on each line
        table.add_column("papers", justify="right")
        table.add_column("deliveries", min_width=10)
        table.add_column("subject", overflow="fold")
        for row in rows:
            number = str(row.number) if row.status in ("sending", "sent") else f"({row.number})"
            parts = []
            if row.sent or row.open or row.failed:
                parts.append(f"{row.sent} sent")
                if row.open:
                    parts.append(f"{row.open} to go")
                if row.failed:
                    parts.append(f"{row.failed} failed")
            table.add_row(
                row.id,
                number,
                row.status,
                f"{row.window_start:%Y-%m-%d} to {row.window_end:%Y-%m-%d}",
                str(row.papers),
                ", ".join(parts) or "-",
                row.subject,
            )
        out().print(table)
        drafts = sum(1 for r in rows if r.status == "draft")
        if drafts:
            err().print(
                f"{plural(drafts, 'draft')}: a draft's number (in brackets) is the one it gets "
                "if it is the next to go out; `slice discard ISSUE` removes a draft."
            )

    @app.command()
    def discard(
        ctx: typer.Context,
        issue: Annotated[str, typer.Argument(metavar="ISSUE", help="The draft's id.")],
    ) -> None:
        """Discard a draft: its papers and number are free again (a sent issue is refused)."""
        from newsletter.issue.lifecycle import discard as discard_draft

        app_state = state(ctx)
        moved = discard_draft(app_state.settings(), app_state.store(), issue, now=datetime.now(UTC))
        where = f"; its files moved to {moved}" if moved else ""
        err().print(f"Discarded draft {issue}{where}.")
