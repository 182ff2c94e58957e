"""`slice subscribers ...`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress

from newsletter.cli.base import WholeHelpGroup, err, out, plural, state

if TYPE_CHECKING:  # the subscriber library and its database load when a command runs
    from newsletter.core.models import Subscriber
    from newsletter.readers.mailqueue import MailQueue
    from newsletter.readers.subscribers import Subscribers

subscribers_app = typer.Typer(
    name="subscribers",
    cls=WholeHelpGroup,
    help="Add, import, export, list and remove subscribers.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

StatusOption = Annotated[
    str | None,
    typer.Option(
        "--status",
        "-s",
        help="Only this status: pending, confirmed, unsubscribed, bounced, complained.",
    ),
]


def _service(ctx: typer.Context) -> Subscribers:
    from newsletter.readers.subscribers import Subscribers

    app_state = state(ctx)
    service = Subscribers(app_state.settings(), app_state.store())
    service.apply_spooled()  # unsubscribes `slice serve` had to spool count from now on
    return service


def _status(status: str | None) -> str | None:
    from newsletter.readers.subscribers import check_status

    return None if status is None else check_status(status)


@subscribers_app.command()
def add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The address to add.")],
    name: Annotated[str, typer.Option("--name", "-n", help="The person's name.")] = "",
    confirmed: Annotated[
        bool,
        typer.Option(
            "--confirmed",
            help="You already hold this person's consent: add them as confirmed, send nothing.",
        ),
    ] = False,
) -> None:
    """Add a subscriber. Without --confirmed they get a confirmation email, as from the web form."""
    from newsletter.core.errors import SendError
    from newsletter.readers.subscribers import AddAction, ConsentSource, SubscribeAction

    service = _service(ctx)
    console = out()
    if confirmed:
        added = service.add(email, name=name, source=ConsentSource.CLI_HELD)
        console.print(
            {
                AddAction.ADDED: f"Added {added.email} as confirmed (consent held by the editor).",
                AddAction.CONFIRMED: f"{added.email} was pending; now confirmed (consent held by the editor).",
                AddAction.UNCHANGED: f"{added.email} is already confirmed; nothing changed.",
            }[added.action]
        )
        return
    result = service.subscribe(email, name=name, source=ConsentSource.CLI)
    found = service.get(result.email)
    # a confirmation queued now, or one still waiting for the relay: send it now
    report = asyncio.run(_queue(service).drain(uids=[found.uid] if found else [], retry_now=True))
    problems = report.failed + report.given_up
    if problems:
        raise SendError(
            f"{result.email} is pending, but its confirmation email was not sent: "
            f"{problems[0][1]}. It stays queued: `slice serve` sends it once the relay "
            "answers. Run the same command again to retry now."
        )
    if report.sent and result.action is SubscribeAction.THROTTLED:
        console.print(f"{result.email} is pending; sent its queued confirmation email.")
        return
    valid_for = f"{service.settings.web.confirm_ttl_hours:g} h"
    if result.action is SubscribeAction.THROTTLED and result.next_send_at is not None:
        console.print(
            f"{result.email} is pending and was sent a confirmation email recently; "
            f"no new one before {result.next_send_at:%Y-%m-%d %H:%M} UTC."
        )
    else:
        console.print(
            {
                SubscribeAction.CREATED: f"Sent a confirmation email to {result.email}; "
                f"they are pending until they follow its link (valid {valid_for}).",
                SubscribeAction.RESENT: f"{result.email} is pending; sent a new confirmation email.",
                SubscribeAction.RECONFIRM: f"{result.email} had left the list; sent a confirmation "
                "email, and they are back only once they follow its link.",
                SubscribeAction.ALREADY_CONFIRMED: f"{result.email} is already confirmed; nothing sent.",
                SubscribeAction.THROTTLED: "",
            }[result.action]
        )


@subscribers_app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="A UTF-8 CSV file whose header names an 'email' column (and optionally 'name')."
        ),
    ],
    confirmed: Annotated[
        bool,
        typer.Option(
            "--confirmed",
            help="You already hold every listed person's consent: add them as confirmed, send nothing.",
        ),
    ] = False,
) -> None:
    """Import subscribers from CSV. Without --confirmed each new address gets a confirmation email."""
    from newsletter.readers.csvfile import ImportStream

    stream = ImportStream(file)
    total = stream.check()  # a file that cannot be read at all imports nothing
    service = _service(ctx)
    queue = _queue(service)
    added = now_confirmed = on_list = sent = 0
    suppressed: list[str] = []
    failed: list[str] = []
    console = err()
    # a bar only on a terminal: elsewhere it would leave a blank line on stderr
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("Importing", total=total)
        # chunk by chunk: each is committed with its confirmation emails queued, then they go
        # out; if this is stopped, `slice serve` sends what is left in the queue
        for outcome in service.import_stream(stream.rows(), confirmed=confirmed):
            known = len(outcome.updated) + len(outcome.unchanged) + len(outcome.throttled)
            added += len(outcome.added)
            now_confirmed += len(outcome.confirmed)
            on_list += known
            suppressed += [
                f"{file}: line {line}: {email} is {status}; kept off the list."
                for line, email, status in outcome.suppressed
            ]
            uids = [c.uid for c in outcome.confirmations]
            for start in range(0, len(uids), 50):
                report = asyncio.run(queue.drain(uids=uids[start : start + 50]))
                sent += len(report.sent)
                failed += [f"{email}: {why}" for email, why in report.failed + report.given_up]
            done = len(outcome.added) + len(outcome.confirmed) + len(outcome.suppressed) + known
            progress.advance(task, done)
    warn = err()
    for problem in stream.problems:
        warn.print(f"{file}: {problem}", markup=False)
    for line in suppressed:
        warn.print(line, markup=False)
    for failure in failed:
        warn.print(f"confirmation email not sent yet to {failure}", markup=False)
    if failed:
        warn.print(
            f"{plural(len(failed), 'confirmation email')} "
            + (
                "stays queued: `slice serve` sends it"
                if len(failed) == 1
                else "stay queued: `slice serve` sends them"
            )
            + " once the relay answers.",
            markup=False,
        )
    summary = [
        f"{added} added" + (" as confirmed" if confirmed else " as pending"),
        f"{now_confirmed} pending now confirmed"
        if confirmed
        else f"{plural(sent, 'confirmation email')} sent",
        f"{on_list} already on the list",
        f"{plural(len(stream.merged), 'duplicate row')} merged",
        f"{len(suppressed)} unsubscribed or bounced kept off",
        f"{plural(len(stream.problems), 'bad row')} skipped",
    ]
    out().print(f"{file}: " + ", ".join(summary) + ".", markup=False)
    if stream.ignored_columns:
        warn.print(f"ignored columns: {', '.join(stream.ignored_columns)}", markup=False)


@subscribers_app.command()
def export(
    ctx: typer.Context,
    status: StatusOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Export subscribers as CSV (email, name, status, consent, dates)."""
    from newsletter.readers.csvfile import write_export

    subscribers = _service(ctx).all(status=_status(status))
    if output is None:
        write_export(subscribers, sys.stdout)
        return
    with output.open("w", encoding="utf-8", newline="") as fh:
        count = write_export(subscribers, fh)
    err().print(f"Wrote {plural(count, 'subscriber')} to {output}.", markup=False)


@subscribers_app.command("list")
def list_(
    ctx: typer.Context,
    status: StatusOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List subscribers, oldest first."""
    subscribers = _service(ctx).all(status=_status(status))
    if as_json:
        typer.echo(json.dumps([_as_dict(s) for s in subscribers], indent=2, ensure_ascii=False))
        return
    if not subscribers:
        out().print("No subscribers" + (f" with status {status}." if status else " yet."))
        return
    # plain aligned columns: nothing is cut to the terminal's width, and grep works
    lines = [("email", "name", "status", "consent", "since")]
    for sub in subscribers:
        since = sub.confirmed_at or sub.created_at
        lines.append((sub.email, sub.name, sub.status, sub.consent_source, f"{since:%Y-%m-%d}"))
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    for line in lines:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


@subscribers_app.command()
def remove(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The address to remove.")],
    forget: Annotated[
        bool, typer.Option("--forget", help="Delete everything stored about this person.")
    ] = False,
) -> None:
    """Unsubscribe an address (it stays suppressed); --forget deletes its data instead."""
    service = _service(ctx)
    if forget:
        gone = service.forget(email)
        out().print(
            f"Deleted every record of {gone}. The address is no longer on the suppression list, "
            "so a later import could add it again."
        )
        return
    result = service.remove(email)
    if result.changed:
        out().print(f"Unsubscribed {result.email}; they will get no more emails.")
    else:
        out().print(f"{result.email} is already {result.status}; nothing changed.")


@subscribers_app.command()
def count(ctx: typer.Context, status: StatusOption = None) -> None:
    """How many subscribers there are, by status."""
    counts = _service(ctx).count()
    checked = _status(status)
    if checked is not None:
        typer.echo(counts[checked])
        return
    for name, n in counts.items():
        typer.echo(f"{name:<13}{n:>8}")
    typer.echo(f"{'total':<13}{sum(counts.values()):>8}")


@subscribers_app.command()
def prune(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show who would be removed; change nothing.")
    ] = False,
) -> None:
    """Delete pending subscribers who did not confirm within the confirmation link's lifetime."""
    result = _service(ctx).prune(dry_run=dry_run)
    verb = "Would remove" if dry_run else "Removed"
    out().print(
        f"{verb} {plural(len(result.removed), 'unconfirmed subscriber')} whose link expired "
        f"(asked before {result.cutoff:%Y-%m-%d %H:%M} UTC).",
        markup=False,
    )
    for email in result.removed:
        out().print(f"  {email}", markup=False)


def _queue(service: Subscribers) -> MailQueue:
    from newsletter.readers.mail import SubscriberMail
    from newsletter.readers.mailqueue import MailQueue
    from newsletter.send.notices import SmtpMailer

    return MailQueue(SubscriberMail(service, mailer=SmtpMailer(service.settings)))


def _as_dict(sub: Subscriber) -> dict[str, str | None]:
    def when(value: object) -> str | None:
        return value.isoformat(timespec="seconds") if value is not None else None  # type: ignore[attr-defined]

    return {
        "email": sub.email,
        "name": sub.name,
        "status": sub.status,
        "consent_source": sub.consent_source,
        "created_at": when(sub.created_at),
        "confirmed_at": when(sub.confirmed_at),
        "unsubscribed_at": when(sub.unsubscribed_at),
        "confirm_ip": sub.confirm_ip,
    }


def register(app: typer.Typer) -> None:
    app.add_typer(subscribers_app, name="subscribers")
