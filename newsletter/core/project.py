"""`slice init`: lay out a new newsletter project.

The slice.toml it writes is generated from the settings classes themselves, so
it always lists every setting with its real default and its description.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formataddr
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel

from newsletter.core.config import CONFIG_NAME, ENV_SECRETS, ENV_SETTINGS
from newsletter.core.errors import ProjectExistsError
from newsletter.core.settings import Settings

FOLDERS = ("templates", "subscribers", "outbox")

_SOURCES_EXAMPLE = """\
# Paper sources, one [[sources]] table each: a unique name, a kind, and the
# kind's own options (`slice fetch --help` lists the kinds). For example:
#
# [[sources]]
# name = "arxiv-imaging"
# kind = "arxiv"
# query = "cat:eess.IV AND abs:radiology"
#
# [[sources]]
# name = "pubmed-radiology-ai"
# kind = "pubmed"
# term = "(radiology[MeSH]) AND (deep learning[tiab])"
"""


def _env_for(section: str, key: str) -> str | None:
    for var, where in ENV_SETTINGS.items():
        if where == (section, key):
            return var
    return None


def _toml_line(key: str, value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, dict) and not value:
        return f"{key} = {{}}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        # one line, so that the whole setting is commented out by one "# "
        inner = ", ".join(tomli_w.dumps({"v": v}).strip()[len("v = ") :] for v in value)
        return f"{key} = [{inner}]"
    return tomli_w.dumps({key: value}).strip()


def default_config_text(name: str | None = None) -> str:
    """slice.toml with every setting commented out at its default."""
    defaults = Settings()
    lines = [
        "# Settings for this Slice newsletter.",
        "# Every setting is listed at its default; uncomment a line to change it.",
        "# Order of precedence: defaults < this file < environment (SLICE_*) < command-line flags.",
        "# Secrets are never written here; they come from the environment: "
        + ", ".join(sorted(set(ENV_SECRETS))),
        "",
    ]
    for section_name, field in Settings.model_fields.items():
        if field.exclude or section_name == "sources":
            continue
        section = getattr(defaults, section_name)
        assert isinstance(section, BaseModel)
        lines.append(f"[{section_name}]")
        for key, info in type(section).model_fields.items():
            value = getattr(section, key)
            if info.description:
                lines.append(f"# {info.description}")
            env = _env_for(section_name, key)
            if env and env not in (info.description or ""):
                lines.append(f"# (environment: {env})")
            if section_name == "newsletter" and key == "name" and name:
                lines.append(_toml_line(key, name))
            elif section_name == "newsletter" and key == "from_address" and name:
                # formataddr quotes a name with commas or quotes, so it stays one address
                lines.append(_toml_line(key, formataddr((name, "newsletter@example.org"))))
            else:
                lines.append("# " + _toml_line(key, value))
        lines.append("")
    lines.append(_SOURCES_EXAMPLE)
    return "\n".join(lines)


@dataclass(frozen=True)
class InitResult:
    root: Path
    created: list[Path]


def init_project(root: Path, *, name: str | None = None) -> InitResult:
    """Create slice.toml and the data folders in ``root``; never overwrite a project."""
    config = root / CONFIG_NAME
    if config.exists():
        raise ProjectExistsError(
            f"{config} already exists: {root} is a Slice project; "
            "edit its slice.toml, or choose an empty folder."
        )
    root.mkdir(parents=True, exist_ok=True)
    created: list[Path] = []
    for folder in FOLDERS:
        path = root / folder
        if not path.exists():
            path.mkdir()
            created.append(path)
    title = name or root.resolve().name.replace("-", " ").replace("_", " ").strip().title() or None
    # exclusive create: a file that appeared meanwhile is not overwritten
    try:
        with config.open("x", encoding="utf-8") as fh:
            fh.write(default_config_text(title))
    except FileExistsError:
        raise ProjectExistsError(f"{config} already exists; not overwritten.") from None
    created.insert(0, config)
    return InitResult(root=root, created=created)
