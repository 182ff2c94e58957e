"""`slice inbound`: take bounces, complaints and emailed unsubscribes as they arrive."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Any

import typer

from newsletter.cli.base import err, out, state
from newsletter.cli.stopping import term_as_interrupt
from newsletter.core.errors import SendError

if TYPE_CHECKING:  # aiosmtpd and the database load when the command runs, not for --help
    from aiosmtpd.smtp import Envelope

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
) -> None:
    """Receive bounces, complaints and unsubscribe emails from the MTA over LMTP (or SMTP).

    Each message's outcome is committed before the server answers 250; see docs/inbound.md
    for the Postfix lines that hand the list's addresses to it.
    """
    overrides: dict[str, Any] = {"inbound": {"host": host, "port": port}}
    if smtp:
        overrides["inbound"]["protocol"] = "smtp"
    app_state = state(ctx)
    settings = app_state.settings(overrides)
    console = out()

    def show(result: Result, envelope: Envelope) -> None:
        who = f" {result.email}" if result.email else ""
        console.print(
            f"{result.outcome.value}{who}: {result.detail} (to {', '.join(envelope.rcpt_tos)})",
            highlight=False,
        )

    from newsletter.send.inbound import inbound_server, list_addresses

    server = inbound_server(settings, app_state.store(), on_result=show)
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
        err().print("Stopped.")
    finally:
        server.stop()


def register(app: typer.Typer) -> None:
    app.command("inbound")(inbound)
