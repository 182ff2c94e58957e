"""The public archive: papers (GET /), issues, and the Atom feed."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> str:
    settings = request.app.state.settings
    template = request.app.state.templates.get_template("web/index.html")
    return str(template.render(newsletter=settings.newsletter, request=request))
