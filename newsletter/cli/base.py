"""What every command shares: the app state, the consoles, and error translation."""

from __future__ import annotations

import os
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from newsletter.core.errors import NewsletterError
from newsletter.core.words import plural as plural  # the CLI's commands import it from here

if TYPE_CHECKING:  # settings (pydantic) and the store (SQLAlchemy) load when a command runs
    from typer._click import Context, HelpFormatter  # Typer's own copy of click

    from newsletter.core.settings import Settings
    from newsletter.core.store import Store


def out() -> Console:
    """Console for results (stdout). Made per call so test runners can capture it."""
    return Console(highlight=False, soft_wrap=True)


def err() -> Console:
    """Console for progress and warnings (stderr)."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class AppState:
    """Root options, and the settings and store built from them on first use."""

    config: Path | None = None
    debug: bool = False
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _settings: Settings | None = None
    _store: Store | None = None

    def settings(
        self, overrides: Mapping[str, Any] | None = None, *, project: bool = True
    ) -> Settings:
        """The settings; ``overrides`` are this command's flags (the top layer).

        ``project``: the command works on a newsletter, so it refuses to run on the
        defaults in a folder that is not one (see `require_project`).
        """
        from newsletter.core.config import load_settings

        if overrides:
            clean = {
                k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in overrides.items()
            }
            clean = {k: v for k, v in clean.items() if v}
            if clean:
                self._settings = load_settings(
                    config=self.config, environ=self.environ, overrides=clean
                )
                return self._checked(self._settings, project)
        if self._settings is None:
            self._settings = load_settings(config=self.config, environ=self.environ)
        return self._checked(self._settings, project)

    def _checked(self, settings: Settings, project: bool) -> Settings:
        if project:
            require_project(settings, self.environ)
        return settings

    def store(self) -> Store:
        from newsletter.core.store import open_store

        if self._store is None:
            self._store = open_store(self.settings())
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None


def require_project(settings: Settings, environ: Mapping[str, str]) -> None:
    """Refuse to run on the defaults outside a project folder.

    Without a slice.toml (here, --config or SLICE_CONFIG) a command would quietly
    create subscribers/slice.db and outbox/ wherever it was typed. SLICE_DATABASE_URL
    names the database outright, so a deployment configured by environment alone runs.
    """
    from newsletter.core.config import CONFIG_NAME
    from newsletter.core.errors import ConfigError

    if settings.config_file is None and not environ.get("SLICE_DATABASE_URL"):
        raise ConfigError(
            f"no {CONFIG_NAME} in {settings.project_dir}: run this in a newsletter's folder, "
            "make one with `slice init`, or name one with --config (or SLICE_CONFIG)."
        )


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_object(AppState)
    if obj is None:  # a command invoked without the root callback (tests of one command)
        obj = AppState()
        ctx.obj = obj
    return obj


class WholeHelpGroup(TyperGroup):
    """A group whose command list shows each command's whole first sentence, wrapped.

    Click cuts it to the width left on one line and ends it with "...", which left most
    of `slice --help` reading "Create a new newsletter project: slice.toml, templates/,...".
    """

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class SliceGroup(WholeHelpGroup):
    """The root group: turns every NewsletterError into one line and exit status 1."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            app_state = ctx.find_object(AppState)
            if app_state is not None and app_state.debug:
                traceback.print_exc()
            message = " ".join(str(exc).split()) or exc.__class__.__name__
            typer.echo(f"Error: {message}", err=True)
            ctx.exit(1)
        finally:
            app_state = ctx.find_object(AppState)
            if app_state is not None:
                app_state.close()
