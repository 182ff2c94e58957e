"""`slice serve`: the web app on uvicorn, in one process or several.

With ``--workers N`` it starts N uvicorn processes, each listening on a socket
of its own so that the kernel spreads the connections over them
(`newsletter.cli.serveworkers`). Each builds the app from the same settings
(passed to it in ``SLICE_SERVE_WORKER``) and they share everything through the
database: the signup limits, the mail queue, the archive's cached lists.
uvicorn runs with its fast parts (uvloop, httptools) when they are installed,
and never rewrites the client's address from forwarded headers itself: the app
believes them only from ``web.trusted_proxies``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from newsletter.cli.base import err, state

if TYPE_CHECKING:
    from fastapi import FastAPI

WORKER_ENV = "SLICE_SERVE_WORKER"

# How long an idle keep-alive connection stays open. Longer than the idle timeout
# of the proxies that usually sit in front (nginx keeps upstream connections 60 s,
# Caddy 2 minutes): whoever closes an idle connection may close it just as the
# other side sends a request on it, and that request is lost (the client sees a
# dropped connection, not an answer). With the proxy always closing first, it
# knows its connection is gone and never sends on it. uvicorn's own default is 5 s.
KEEP_ALIVE_SECONDS = 130


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: web.host).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: web.port).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, max=64, help="Processes to run (default: web.workers); they share every limit."
        ),
    ] = None,
) -> None:
    """Run the web app: signup, confirm, unsubscribe and the archive."""
    import uvicorn

    app_state = state(ctx)
    overrides = {"web": {"host": host, "port": port, "workers": workers}}
    settings = app_state.settings(overrides)
    settings.require_secret_key()
    app_state.store()  # migrate once, here, before any worker starts
    err().print(
        f"Serving {settings.newsletter.name} on http://{settings.web.host}:{settings.web.port} "
        f"with {settings.web.workers} worker{'s' if settings.web.workers > 1 else ''} "
        f"(links in emails point at {settings.web.base_url}). Press Ctrl+C to stop.",
        markup=False,
    )
    os.environ[WORKER_ENV] = json.dumps(
        {
            "config": str(settings.config_file) if settings.config_file else None,
            "cwd": str(settings.project_dir),
            "overrides": {"web": {k: v for k, v in overrides["web"].items() if v is not None}},
        }
    )
    options: dict[str, Any] = {}
    if _installed("uvloop"):
        options["loop"] = "uvloop"
    if _installed("httptools"):
        options["http"] = "httptools"
    options.update(
        app="newsletter.cli.serve:worker_app",
        factory=True,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        log_level="warning",
    )
    if settings.web.workers > 1:
        from newsletter.cli.serveworkers import run_workers

        run_workers(settings.web.workers, settings.web.host, settings.web.port, options)
        return
    uvicorn.run(host=settings.web.host, port=settings.web.port, **options)


def _installed(module: str) -> bool:
    from importlib.util import find_spec

    return find_spec(module) is not None


def worker_app() -> FastAPI:
    """The app in one worker process, from the settings `serve` passed on."""
    from newsletter.core.config import load_settings
    from newsletter.web import create_app

    given = json.loads(os.environ[WORKER_ENV])
    settings = load_settings(
        config=Path(given["config"]) if given["config"] else None,
        environ=dict(os.environ),
        overrides=given["overrides"] or None,
        cwd=Path(given["cwd"]),
    )
    return create_app(settings)


def register(app: typer.Typer) -> None:
    app.command()(serve)
