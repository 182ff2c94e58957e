"""The web copy of an issue inside the site's frame (navigation, signup beside it).

Compose writes the web copy as a whole email document (MJML's tables, its
own <style> blocks). The archive shows its body inside the site's page, so the
copy's styles are scoped to the element that holds it (``body`` becomes that
element, ``p`` becomes ``.issue-copy p``), and its dark-scheme rules are left
out: the site's pages have one light scheme, and the copy follows the frame.
The CSS is read with cssutils (a CSS parser premailer already brings), not with
regular expressions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cssutils
from lxml import html as lxml_html
from markupsafe import Markup

SCOPE = ".issue-copy"

cssutils.log.setLevel(logging.CRITICAL)  # mso-* and other mail-client properties are expected


@dataclass(frozen=True)
class FramedCopy:
    styles: Markup  # <style> elements, scoped
    body: Markup  # what the copy's <body> holds
    title: str


def _scope_selector(selector: str) -> str:
    selector = selector.strip()
    for root in ("html body", "body", "html"):
        if selector == root:
            return SCOPE
        if selector.startswith(root + " "):
            return SCOPE + selector[len(root) :]
    return f"{SCOPE} {selector}"


def _scope_rules(container: Any) -> None:
    """Scope the rules of a stylesheet or an @media rule, in place."""
    for rule in list(container.cssRules):
        if rule.type == rule.STYLE_RULE:
            rule.selectorText = ", ".join(
                _scope_selector(s.selectorText) for s in rule.selectorList
            )
        elif rule.type == rule.MEDIA_RULE:
            if "prefers-color-scheme" in rule.media.mediaText:
                container.deleteRule(rule)
            else:
                _scope_rules(rule)


def scoped_css(text: str) -> str:
    """``text`` (a stylesheet) with every rule under `SCOPE`, its dark-scheme rules dropped."""
    sheet = cssutils.parseString(text, validate=False)
    _scope_rules(sheet)
    return str(sheet.cssText.decode("utf-8"))


@lru_cache(maxsize=16)
def framed(document: str) -> FramedCopy:
    """The parts of a web copy (a whole HTML document) that the site's page shows."""
    doc = lxml_html.document_fromstring(document)
    styles = []
    for style in doc.iter("style"):
        css = scoped_css(style.text or "")
        if css.strip():
            media = style.get("media")
            attr = f' media="{Markup.escape(media)}"' if media else ""
            styles.append(f"<style{attr}>\n{css}\n</style>")
    body = doc.body
    inner = str(Markup.escape(body.text or "")) + "".join(
        lxml_html.tostring(child, encoding="unicode") for child in body
    )
    title = doc.findtext(".//title") or ""
    # lxml serialized what the file held; compose wrote it (sanitized papers, our templates)
    return FramedCopy(styles=Markup("\n".join(styles)), body=Markup(inner), title=title.strip())  # noqa: S704
