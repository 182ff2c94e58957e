"""The `slice` command: a thin layer over the library.

Each command parses its options, makes one library call and prints the result.
Errors from the library are translated in one place (`SliceGroup`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsletter import __version__
from newsletter.cli.base import AppState, SliceGroup, out, state

app = typer.Typer(
    name="slice",
    cls=SliceGroup,
    help="Slice: weekly research-paper briefings by email.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"slice {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Path of slice.toml (default: $SLICE_CONFIG, then ./slice.toml)."
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of an error.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Slice: weekly research-paper briefings by email."""
    ctx.obj = AppState(config=config, debug=debug)


@app.command()
def init(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Argument(help="Folder for the new newsletter (created if needed).")
    ] = Path("."),
    name: Annotated[str | None, typer.Option(help="The newsletter's name.")] = None,
) -> None:
    """Create a new newsletter project: slice.toml, templates/, subscribers/, outbox/."""
    from newsletter.core.project import init_project

    state(ctx)
    result = init_project(directory, name=name)
    console = out()
    for path in result.created:
        console.print(f"created {path}")
    console.print(
        f"Next: edit {result.root / 'slice.toml'} (name, sender, sources), then `slice fetch`."
    )


def _register() -> None:
    # Each part of the CLI lives in its own module and adds its commands here.
    from newsletter.cli import commands

    commands.register(app)


_register()
