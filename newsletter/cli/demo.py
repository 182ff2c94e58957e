"""`slice demo`: the whole loop, locally, in one command."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from newsletter.cli.base import err, out, plural, state

if TYPE_CHECKING:  # the demo pulls in every part; load it only when it runs
    from newsletter.demo import DemoReport


def _where(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def describe(report: DemoReport, *, program: str = "slice") -> list[str]:
    """What a newcomer reads at the end: what happened, and where to look."""
    root = report.project
    folder = report.compose.folder
    ingest = report.ingest
    issue_mail = report.issue_messages()
    counts = ", ".join(f"{n} {state_}" for state_, n in sorted(report.send.counts.items()) if n)
    lines = [
        f"Demo newsletter in {root}",
        f"  1. ingested {ingest.new} sample papers from {_where(report.papers_file, root)} "
        f"({len(ingest.rejected)} rejected)",
        f"  2. composed issue {report.issue_id} ({plural(report.compose.rendered.message.paper_count, 'paper')}): "
        f"{report.compose.rendered.message.subject}",
        "  3. subscribed "
        + ", ".join(r.email for r in report.readers)
        + " through the signup form; each confirmed by following the link in their email",
        f"  4. sent {report.issue_id} to {report.send.audience} readers: {counts}",
        "",
        "Where to look:",
        # both files keep placeholders (__SLICE_...__) that a send or the archive fills in:
        # say so, or a newcomer opening them takes "__SLICE_GREETING__" for a bug
        f"  the email as composed   {folder.email_html}",
        "                          (a template: each reader's copy fills in the __SLICE_…__ marks)",
        f"  the email, filled in    {folder.preview}",
        "                          (as a sample reader sees it; never sent)",
        f"  the web copy            {folder.web_html}",
        f"                          (as readers see it: http://127.0.0.1:8000/issues/{report.issue_id})",
        f"  what the readers got    {report.mailbox}/ ({len(report.received)} .eml files: "
        f"{len(issue_mail)} issues, the rest confirmation and welcome emails)",
    ]
    if issue_mail and issue_mail[0].path is not None:
        lines.append(f"  one reader's copy       {issue_mail[0].path}")
    lines += [
        "",
        "Browse the archive (papers, search, the sent issue) at http://127.0.0.1:8000/ with",
        f"the demo's signing key (kept in {_where(report.env_file, root)}, so the links in its emails work):",
        f"  {report.serve_command(program)}",
        "New signups get their confirmation email through a local SMTP server; in another terminal:",
        f"  {program} --config {shlex.quote(str(root / 'slice.toml'))} dev-smtp",
    ]
    return lines


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        ctx: typer.Context,
        directory: Annotated[
            Path | None,
            typer.Argument(help="Folder for the demo project (default: a new temporary folder)."),
        ] = None,
    ) -> None:
        """Run the whole loop locally: sample papers, an issue, three readers, a send."""
        state(ctx)
        progress = err()
        from newsletter.demo import run_demo

        report = run_demo(directory, progress=lambda step: progress.print(f"… {step}"))
        console = out()
        # as it was typed (`.venv/bin/slice demo` from the README), so the command can be pasted
        program = sys.argv[0] if Path(sys.argv[0]).name == "slice" else "slice"
        for line in describe(report, program=program):
            console.print(line, markup=False)
