"""`slice send`, `slice dev-smtp` and `slice bounces import`."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from newsletter.cli.base import WholeHelpGroup, err, out, plural, state
from newsletter.cli.stopping import run_stoppable, term_as_interrupt
from newsletter.core.errors import ConfigError, RelayRefusedError, SendError

if TYPE_CHECKING:  # the sender and its database load when a command runs, not for --help
    from newsletter.core.settings import Settings
    from newsletter.core.store import Store
    from newsletter.send.deliver import Answer
    from newsletter.send.devsmtp import Received
    from newsletter.send.ledger import Outcome, Row
    from newsletter.send.review import IssueStatusReport


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f}/s" if speed else "-/s", style="cyan")


class ProgressEvents:
    """Draws the send on stderr: a bar, counts, rate and ETA; one line per failure."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            _Rate(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}", style="yellow"),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("sending", total=None, counts="", note="")
        from newsletter.send.run import RunTally

        self.tally = RunTally()

        self._started = False

    def __enter__(self) -> ProgressEvents:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._started:
            self.progress.stop()
            self._started = False

    def _refresh(self, advance: int = 0) -> None:
        t = self.tally
        counts = f"sent {t.sent} · deferred {t.deferred} · failed {t.failed} · skipped {t.skipped}"
        self.progress.update(self.task, advance=advance, counts=counts)

    def begin(self, *, total: int, done: int) -> None:
        # drawn only once the send really starts, so an early error stays one line
        self.progress.start()
        self._started = True
        self.progress.update(self.task, total=total, completed=done)
        self._refresh()

    def outcome(self, row: Row, outcome: Outcome, answer: Answer | None) -> None:
        from newsletter.core.models import DeliveryStatus

        t = self.tally
        if outcome.status == DeliveryStatus.SENT:
            t.sent += 1
        elif outcome.status == DeliveryStatus.DEFERRED:
            t.deferred += 1
            assert outcome.next_attempt_at is not None
            self.console.print(
                f"[yellow]deferred[/] {row.reader.email}: {outcome.code or ''} {outcome.error} "
                f"(retry at {outcome.next_attempt_at:%H:%M:%S} UTC)",
                markup=True,
                highlight=False,
            )
        elif outcome.status == DeliveryStatus.FAILED:
            t.failed += 1
            kept = "address suppressed as bounced" if outcome.suppress else "address kept"
            self.console.print(
                f"[red]failed[/] {row.reader.email}: {outcome.code or ''} {outcome.error} ({kept})",
                markup=True,
                highlight=False,
            )
        done = outcome.status in (DeliveryStatus.SENT, DeliveryStatus.FAILED)
        self._refresh(advance=1 if done else 0)

    def skipped(self, rows: list[Row]) -> None:
        self.tally.skipped += len(rows)
        self._refresh(advance=len(rows))

    def waiting(self, reason: str, until: datetime | None) -> None:
        note = ""
        if reason == "retry" and until is not None:
            note = f"waiting to retry deferred messages at {until:%H:%M:%S} UTC"
        elif reason == "relay" and until is not None:
            note = f"the relay does not answer: trying again at {until:%H:%M:%S} UTC"
        elif reason and until is not None:
            note = f"{reason} cap reached: waiting until {until:%H:%M:%S} UTC"
        self.progress.update(self.task, note=note)


def send(
    ctx: typer.Context,
    issue: Annotated[
        str | None,
        typer.Argument(
            help="The issue id, e.g. 2025-W24 (a folder in outbox/); "
            "with --status alone, the last issue sending or sent.",
            show_default=False,
        ),
    ] = None,
    dry_run_: Annotated[
        bool, typer.Option("--dry-run", help="Write each message to outbox/ISSUE/dry-run/ instead.")
    ] = False,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="ADDRESS",
            help="Send one proof copy (subject marked [Proof]) here; no reader gets it.",
        ),
    ] = None,
    proof: Annotated[
        bool,
        typer.Option(
            "--proof", help="Send one proof copy to --to, by default newsletter.editor_address."
        ),
    ] = False,
    rate: Annotated[
        float | None, typer.Option(min=0, help="Messages per second (0: no limit).")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=64, help="SMTP connections at once.")
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Try failed and deferred readers again.")
    ] = False,
    status: Annotated[
        bool,
        typer.Option(
            "--status",
            help="Show the delivery ledger of the issue, and the workers sending it now; exit.",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=32,
            help=(
                "Worker processes sharing this send (one rate and cap for all). More than one "
                "needs PostgreSQL: with SQLite it is refused, as SQLite lets one process write "
                "at a time. More `slice send` on other machines against the same database join in."
            ),
        ),
    ] = None,
) -> None:
    """Send a composed issue to every confirmed subscriber (resumes a stopped send)."""
    if sum([dry_run_, to is not None or proof, status]) > 1:
        # one line, as every other mistake here (a usage error prints the usage block first)
        raise ConfigError("use only one of --dry-run, --to/--proof and --status.")
    app_state = state(ctx)
    settings = app_state.settings(
        {"send": {"rate": rate, "concurrency": concurrency, "workers": workers}}
    )
    console = out()
    from newsletter.send.review import dry_run, issue_status, latest_issue_id, send_proof
    from newsletter.send.setup import deliverability_warnings

    if issue is None:
        if not status:
            raise ConfigError("name the issue to send, e.g. `slice send 2025-W24`.")
        issue = latest_issue_id(app_state.store())

    if not status:
        for warning in deliverability_warnings(settings):
            err().print(f"Warning: {warning}", highlight=False)

    if status:
        _print_status(console, issue_status(settings, app_state.store(), issue), issue)
    elif to is not None or proof:
        to = to or settings.newsletter.editor_address
        if not to:
            raise SendError(
                "--proof needs --to ADDRESS, or newsletter.editor_address in slice.toml "
                "(where proofs go by default)."
            )
        answer = asyncio.run(send_proof(settings, issue, to))
        console.print(f"Sent a proof of {issue} to {to} (relay said: {answer}).")
    elif dry_run_:
        report = dry_run(settings, app_state.store(), issue)
        signed = "DKIM-signed" if report.signed else "not DKIM-signed: no SLICE_DKIM_KEY"
        console.print(f"Wrote {plural(report.written, 'message')} to {report.folder} ({signed}).")
    elif settings.send.workers > 1:
        from newsletter.cli.sendworkers import send_with_workers

        send_with_workers(
            console, err(), settings, app_state.store(), issue, retry_failed=retry_failed
        )
    else:
        _send(console, settings, app_state.store(), issue, retry_failed=retry_failed)


def _send(
    console: Console, settings: Settings, store: Store, issue: str, *, retry_failed: bool
) -> None:
    stderr = err()
    from newsletter.send.service import SendOptions, send_issue

    options = SendOptions.from_settings(settings)
    with ProgressEvents(stderr) as events:
        try:
            report = run_stoppable(
                send_issue(
                    settings,
                    store,
                    issue,
                    options=options,
                    retry_failed=retry_failed,
                    events=events,
                )
            )
        except KeyboardInterrupt:
            events.__exit__()
            stderr.print(
                f"Interrupted: {events.tally.sent} sent in this run; nothing was lost. "
                f"Run `slice send {issue}` again to continue."
            )
            raise typer.Exit(130) from None
    if report.already_sent:
        when = f" on {report.sent_at:%Y-%m-%d %H:%M} UTC" if report.sent_at else ""
        failed = report.counts.get("failed", 0)
        hint = f"; `--retry-failed` tries the {failed} failed again" if failed else ""
        console.print(
            f"Issue {issue} was already sent{when} (sent {report.counts.get('sent', 0)}, "
            f"failed {failed}, skipped {report.counts.get('skipped', 0)}); nothing to do{hint}."
        )
        return
    if report.resumed_in_flight:
        stderr.print(
            f"Resumed: {plural(report.resumed_in_flight, 'message')} in flight when the last run "
            "stopped; they went again with the same Message-ID."
        )
    t, c = report.tally, report.counts
    rate = t.sent / report.elapsed if report.elapsed else 0.0
    console.print(
        f"Issue {issue}: sent {t.sent}, deferred {t.deferred}, failed {t.failed} "
        f"({t.suppressed} suppressed), skipped {t.skipped} in {report.elapsed:.1f}s "
        f"({rate:.1f}/s over {plural(t.connections, 'connection')}"
        f"{', DKIM-signed' if report.signed else ''})."
    )
    console.print(
        f"Ledger: {c['sent']} sent, {c['failed']} failed, {c['skipped']} skipped, "
        f"{c['deferred']} deferred, {c['pending'] + c['sending']} waiting of {report.audience}."
        + (" Issue finished." if report.finished else "")
    )
    if t.stopped:
        raise RelayRefusedError(t.stopped)
    if not report.finished:
        console.print(f"Run `slice send {issue}` again to continue.")


def _print_status(console: Console, report: IssueStatusReport, issue: str) -> None:
    if report.issue is None:
        raise SendError(
            f"issue {issue} has not been sent yet ({report.confirmed} confirmed subscribers "
            f"would get it); run `slice send {issue}` to send it."
        )
    if not any(report.counts.values()) and not report.workers:  # composed, never sent
        console.print(
            f"Issue {issue}: {report.issue.status}, not sent yet; {report.confirmed} confirmed "
            f"subscribers would get it: run `slice send {issue}` to send it."
        )
        return
    table = Table(title=f"Issue {issue}: {report.issue.status}", title_justify="left")
    table.add_column("state")
    table.add_column("readers", justify="right")
    for name, count in report.counts.items():
        table.add_row(name, str(count))
    table.add_row("total", str(sum(report.counts.values())))
    console.print(table)
    if report.workers and report.now is not None:
        workers = Table(title="Workers sending it now", title_justify="left")
        for name in ("worker", "host", "pid", "sent", "rate", "last heartbeat"):
            workers.add_column(name, justify="left" if name in ("worker", "host") else "right")
        for w in report.workers:
            age = (report.now - w.heartbeat_at).total_seconds()
            workers.add_row(
                w.id,
                w.host,
                str(w.pid),
                str(w.sent),
                f"{w.rate:.1f}/s",
                f"{max(0.0, age):.1f}s ago",
            )
        console.print(workers)
    else:
        console.print("No worker is sending it now.")
    for address, state_, code, error in report.failures:
        console.print(f"{state_} {address}: {code or ''} {error}", highlight=False)


def dev_smtp(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 1025,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """A local SMTP server that keeps every message as a .eml file in outbox/mailbox/."""
    settings = state(ctx).settings(project=False)  # a mail sink needs no newsletter
    folder = settings.outbox_dir / "mailbox"
    console = out()
    parser = BytesHeaderParser(policy=default_policy)

    def show(item: Received) -> None:
        headers = parser.parsebytes(item.data)
        where = item.path.relative_to(settings.project_dir) if item.path else ""
        console.print(
            f"{item.received_at:%H:%M:%S} {item.mail_from} → {', '.join(item.rcpt_tos)} "
            f"{str(headers.get('Subject', ''))!r} ({len(item.data) / 1024:.1f} KB) {where}",
            highlight=False,
        )

    from newsletter.send.devsmtp import MailSink, SmtpServerThread

    server = SmtpServerThread(MailSink(folder=folder, on_message=show), host=host, port=port)
    # SIGTERM handled before the port opens: a stop that comes right away is still clean
    with term_as_interrupt():
        try:
            try:
                server.start()
            except OSError as exc:
                raise SendError(
                    f"cannot listen on {host}:{port}: {exc.strerror}; pick another port with --port."
                ) from None
            console.print(
                f"Listening on {host}:{server.port}; messages go to {folder}. Ctrl-C stops."
            )
            threading.Event().wait()
        except KeyboardInterrupt:
            console.print("Stopped.")
        finally:
            server.stop()


bounces_app = typer.Typer(
    cls=WholeHelpGroup, help="Bounce and complaint reports.", no_args_is_help=True
)


@bounces_app.command("import")
def bounces_import(
    ctx: typer.Context,
    path: Annotated[
        Path, typer.Argument(help="An mbox file, a maildir, a .eml file or a folder of them.")
    ],
) -> None:
    """Read bounces (DSN), complaints (ARF) and emailed unsubscribes; act on the signed ones."""
    app_state = state(ctx)
    settings = app_state.settings()
    from newsletter.readers.bounces import import_bounces

    report = import_bounces(
        app_state.store(),
        path,
        secret_key=settings.require_secret_key(),
        soft_bounce_limit=settings.inbound.soft_bounce_limit,
    )
    console = out()
    for line in report.lines():
        console.print(line, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("send")(send)
    app.command("dev-smtp")(dev_smtp)
    app.add_typer(bounces_app, name="bounces")
