"""Template lookup: the project's templates/ first, then the package's defaults.

Strict: a missing variable is an error, not a blank. HTML, MJML and XML
templates are autoescaped; ``.txt`` templates are not (they are plain text).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    select_autoescape,
)

# the top-level templates/ folder, shipped as newsletter.templates (pyproject.toml)
PACKAGE_TEMPLATES = Path(str(resources.files("newsletter.templates")))


def template_environment(project_templates: Path | None) -> Environment:
    """A Jinja2 environment over ``project_templates`` then the package defaults."""
    loaders: list[FileSystemLoader | PackageLoader] = []
    if project_templates is not None:
        loaders.append(FileSystemLoader(str(project_templates)))
    loaders.append(FileSystemLoader(str(PACKAGE_TEMPLATES)))
    return Environment(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html", "mjml", "xml"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
