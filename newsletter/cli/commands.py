"""The command modules, registered on the root app in one place."""

from __future__ import annotations

import typer

from newsletter.cli import compose, demo, issues, papers
from newsletter.cli import inbound as inbound_commands
from newsletter.cli import send as send_commands
from newsletter.cli import subscribers as subscriber_commands


def register(app: typer.Typer) -> None:
    """Add every part's commands. A new part adds one line here."""
    papers.register(app)
    compose.register(app)
    issues.register(app)
    subscriber_commands.register(app)
    send_commands.register(app)
    inbound_commands.register(app)
    demo.register(app)
