"""The web side (`slice serve`): signup, confirm, unsubscribe, and the public archive.

`create_app` builds the FastAPI app from settings and a store; each part adds
its routes as a router of its own module (`signup`, `archive`).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from newsletter.config import Settings
from newsletter.store import Store, open_store
from newsletter.templating import template_environment


def create_app(settings: Settings, *, store: Store | None = None) -> FastAPI:
    """The app for ``settings``; ``store`` defaults to the project's database."""
    from newsletter.web import archive, signup

    app = FastAPI(title=settings.newsletter.name, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.store = store if store is not None else open_store(settings)
    app.state.templates = template_environment(settings.templates_dir)

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    app.include_router(signup.router)
    app.include_router(archive.router)
    return app
