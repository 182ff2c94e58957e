"""`slice inbound`: take bounces, complaints and emailed unsubscribes as they arrive."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any

import typer

from newsletter.cli.base import err, out, plural, state
from newsletter.cli.stopping import term_as_interrupt
from newsletter.core.errors import SendError

if TYPE_CHECKING:  # aiosmtpd and the database load when the command runs, not for --help
    from aiosmtpd.smtp import Envelope

    from newsletter.core.settings import Settings
    from newsletter.core.store import Store
    from newsletter.readers.bounces import Result


def inbound(
    ctx: typer.Context,
    smtp: Annotated[
        bool, typer.Option("--smtp", help="Speak SMTP instead of LMTP (inbound.protocol).")
    ] = False,
    host: Annotated[str | None, typer.Option(help="Address to listen on (inbound.host).")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on; 0 picks a free one (inbound.port).")
    ] = None,
    imap: Annotated[
        bool,
        typer.Option(
            "--imap", help="Drain the IMAP mailbox in inbound.imap_* once instead, then exit."
        ),
    ] = False,
) -> None:
    """Receive bounces, complaints and unsubscribe emails from the MTA over LMTP (or SMTP).

    Each message's outcome is committed before the server answers 250; when the database
    cannot take it, the answer is 451 and the MTA tries again later. See docs/inbound.md
    for the Postfix lines that hand the list's addresses to it. With --imap, drain a hosted
    mailbox once instead (each message deleted once its outcome is committed).
    """
    overrides: dict[str, Any] = {"inbound": {"host": host, "port": port}}
    if smtp:
        overrides["inbound"]["protocol"] = "smtp"
    app_state = state(ctx)
    settings = app_state.settings(overrides)
    console = out()
    if imap:
        _drain(settings, app_state.store())
        return

    seen: Counter[str] = Counter()

    def show(result: Result, envelope: Envelope) -> None:
        seen[result.outcome.value] += 1
        console.print(f"{_line(result)} (to {', '.join(envelope.rcpt_tos)})", highlight=False)

    def retry(reason: str, envelope: Envelope) -> None:
        seen["answered 451 (the mail server tries again)"] += 1
        err().print(
            f"Not recorded, answered 451 so the mail server keeps it and tries again "
            f"(to {', '.join(envelope.rcpt_tos)}): {reason}",
            highlight=False,
        )

    from newsletter.send.inbound import inbound_server, list_addresses

    server = inbound_server(settings, app_state.store(), on_result=show, on_retry=retry)
    conf = settings.inbound
    try:
        server.start()
    except OSError as exc:
        raise SendError(
            f"cannot listen on {conf.host}:{conf.port}: {exc.strerror}; pick another with --port."
        ) from None
    err().print(
        f"Listening for {conf.protocol.upper()} on {conf.host}:{server.port} for "
        f"{' and '.join(list_addresses(settings))}. Ctrl-C stops."
    )
    try:
        with term_as_interrupt():
            threading.Event().wait()
    except KeyboardInterrupt:
        counts = ", ".join(f"{n} {what}" for what, n in sorted(seen.items()))
        err().print(
            f"Stopped after {plural(seen.total(), 'message')}: {counts}." if seen else "Stopped."
        )
    finally:
        server.stop()


def _line(result: Result) -> str:
    who = f" {result.email}" if result.email else ""
    return f"{result.outcome.value}{who}: {result.detail}"


def _drain(settings: Settings, store: Store) -> None:
    from newsletter.send.imapdrain import drain

    console = out()
    conf = settings.inbound
    report = drain(settings, store, on_result=lambda r: console.print(_line(r), highlight=False))
    counts = ", ".join(f"{n} {k}" for k, n in sorted(report.counts().items())) or "nothing"
    big = (
        f"; {report.too_large} over inbound.max_message_bytes left there"
        if report.too_large
        else ""
    )
    console.print(
        f"Drained {plural(len(report.results), 'message')} from {conf.imap_folder} at "
        f"{conf.imap_host}: {counts}{big}.",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("inbound")(inbound)
