"""MJML in, email-safe HTML out: lint, compile, inline.

`render_mjml` is the one way Slice turns MJML into the HTML of an email:

1. **Lint** the MJML. The compiler (mjml-python) accepts almost anything without a word:
   unknown ``mj-*`` tags are copied into the HTML, a mistyped colour or size is passed
   through, a ``javascript:`` link survives, a leftover ``{{ name }}`` is mailed as is.
   The lint refuses those, with the line of each problem.
2. **Compile** with ``fonts={}``, so the HTML links no web font (a Google Fonts link
   tells Google who opened the email).
3. **Inline** the CSS of ``<mj-style inline="inline">`` blocks into ``style=""`` attributes,
   which mjml-python does not do. premailer does the inlining, on the ``<body>`` only and
   with only those rules: MJML's ``<head>`` (the lowercase doctype, the media queries with
   ``!important`` that make the layout single-column on phones, the Outlook conditional
   comments) is never handed to it, it may not fetch anything, and it adds no attributes
   of its own. The inline blocks also stay in the ``<head>`` for clients that read
   ``<style>``, so their ``:hover`` and ``@media`` rules still work there.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass

from mjml import mjml2html

from newsletter.core.errors import MjmlError

__all__ = ["MjmlProblem", "lint_mjml", "render_mjml"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


KNOWN_TAGS = _words(
    """
    mjml mj-head mj-body mj-attributes mj-all mj-class mj-breakpoint mj-font
    mj-html-attributes mj-html-attribute mj-selector mj-preview mj-style mj-title
    mj-accordion mj-accordion-element mj-accordion-title mj-accordion-text mj-button
    mj-carousel mj-carousel-image mj-column mj-divider mj-group mj-hero mj-image
    mj-navbar mj-navbar-link mj-raw mj-section mj-social mj-social-element mj-spacer
    mj-table mj-text mj-wrapper
    """
)

# HTML that has no place in an email: scripts, frames, forms, external resources.
FORBIDDEN_HTML = _words("script iframe frame frameset object embed applet form link base")

_NAMED_COLORS = _words(
    """
    aliceblue antiquewhite aqua aquamarine azure beige bisque black blanchedalmond blue
    blueviolet brown burlywood cadetblue chartreuse chocolate coral cornflowerblue cornsilk
    crimson cyan darkblue darkcyan darkgoldenrod darkgray darkgreen darkgrey darkkhaki
    darkmagenta darkolivegreen darkorange darkorchid darkred darksalmon darkseagreen
    darkslateblue darkslategray darkslategrey darkturquoise darkviolet deeppink deepskyblue
    dimgray dimgrey dodgerblue firebrick floralwhite forestgreen fuchsia gainsboro ghostwhite
    gold goldenrod gray green greenyellow grey honeydew hotpink indianred indigo ivory khaki
    lavender lavenderblush lawngreen lemonchiffon lightblue lightcoral lightcyan
    lightgoldenrodyellow lightgray lightgreen lightgrey lightpink lightsalmon lightseagreen
    lightskyblue lightslategray lightslategrey lightsteelblue lightyellow lime limegreen linen
    magenta maroon mediumaquamarine mediumblue mediumorchid mediumpurple mediumseagreen
    mediumslateblue mediumspringgreen mediumturquoise mediumvioletred midnightblue mintcream
    mistyrose moccasin navajowhite navy oldlace olive olivedrab orange orangered orchid
    palegoldenrod palegreen paleturquoise palevioletred papayawhip peachpuff peru pink plum
    powderblue purple rebeccapurple red rosybrown royalblue saddlebrown salmon sandybrown
    seagreen seashell sienna silver skyblue slateblue slategray slategrey snow springgreen
    steelblue tan teal thistle tomato turquoise violet wheat white whitesmoke yellow
    yellowgreen transparent inherit currentcolor
    """
)
_COLOR = re.compile(
    r"^(#[0-9a-f]{3}|#[0-9a-f]{4}|#[0-9a-f]{6}|#[0-9a-f]{8}|rgba?\(\s*[\d.%\s,/]+\)|hsla?\(\s*[\d.%deg\s,/]+\))$"
)
_LENGTH = r"(0|-?\d+(\.\d+)?(px|%|em|rem|pt))"
_ONE_LENGTH = re.compile(rf"^{_LENGTH}$")
_BOX = re.compile(rf"^{_LENGTH}(\s+{_LENGTH}){{0,3}}$")
_LINE_HEIGHT = re.compile(rf"^({_LENGTH}|\d+(\.\d+)?|normal)$")
_CHOICES: dict[str, frozenset[str]] = {
    "align": frozenset({"left", "center", "right", "justify"}),
    "text-align": frozenset({"left", "center", "right", "justify"}),
    "vertical-align": frozenset({"top", "middle", "bottom"}),
    "direction": frozenset({"ltr", "rtl"}),
    "full-width": frozenset({"full-width", "false"}),
    "font-weight": frozenset(
        {"normal", "bold", "bolder", "lighter", *(f"{n}00" for n in range(1, 10))}
    ),
    "font-style": frozenset({"normal", "italic", "oblique"}),
    "text-transform": frozenset({"none", "uppercase", "lowercase", "capitalize"}),
    "text-decoration": frozenset({"none", "underline", "overline", "line-through"}),
    "target": frozenset({"_blank", "_self", "_parent", "_top"}),
    "inline": frozenset({"inline"}),
}
_BOX_ATTRS = frozenset({"padding", "inner-padding", "icon-padding", "text-padding"})
_LENGTH_ATTRS = frozenset(
    {
        "width", "height", "font-size", "letter-spacing", "border-radius", "inner-border-radius",
        "padding-top", "padding-bottom", "padding-left", "padding-right", "icon-size",
        "icon-height", "icon-width", "text-padding", "max-height",
    }
)  # fmt: skip
_URL_ATTRS = frozenset(
    {"href", "src", "background-url", "background", "action", "formaction", "xlink:href", "srcset"}
)
_SAFE_SCHEMES = ("https://", "http://", "mailto:", "tel:", "#", "cid:")

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TAG = re.compile(
    r"<(?P<close>/?)(?P<name>[A-Za-z][\w:.-]*)(?P<attrs>(?:\s+[^\s=/>]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?)*)\s*(?P<self>/?)>"
)
_ATTR = re.compile(r"([^\s=/>]+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?")
_JINJA = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")
_STYLE_BLOCK = re.compile(r"<mj-style(?P<attrs>[^>]*)>(?P<css>.*?)</mj-style\s*>", re.S | re.I)
_INLINE = re.compile(r"""\binline\s*=\s*(["']?)inline\1""", re.I)
_CONTROL = re.compile(r"[\x00-\x20\x7f]+")


@dataclass(frozen=True)
class MjmlProblem:
    """One thing wrong with an MJML document, at a line (1-based)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


def _blank(match: re.Match[str]) -> str:
    """Same length, same line breaks: offsets (and lines) stay where they were."""
    return re.sub(r"[^\n]", " ", match.group(0))


def _check_url(value: str) -> str | None:
    """Why a link or source is unsafe, or None. Entities and hidden characters are undone first."""
    plain = _CONTROL.sub("", html.unescape(value)).lower()
    if not plain or plain.startswith(_SAFE_SCHEMES) or plain.startswith("__slice_"):
        return None
    scheme = re.match(r"^([a-z][a-z0-9+.-]*):", plain)
    if scheme:
        return f"the {scheme.group(1)}: scheme is not allowed in an email (use https://)"
    return "is not an absolute URL: links in an email need https://... (relative links break in mail clients)"


def _check_attr(tag: str, name: str, value: str) -> str | None:
    """Why an attribute value is wrong, or None."""
    name = name.lower()
    v = value.strip().lower()
    if name.startswith("on"):
        return "event-handler attributes (JavaScript) are not allowed"
    if name in _URL_ATTRS:
        if name == "background" and not tag.startswith("mj-"):
            return _check_url(value)
        if name == "background" or name == "srcset":
            return None
        return _check_url(value)
    if name == "style" and re.search(r"expression\s*\(|javascript:|url\s*\(|@import", v):
        return "style attributes may not load URLs or run script"
    if not tag.startswith("mj-"):
        return None
    if name.endswith("color") or name == "background":
        if v in _NAMED_COLORS or _COLOR.match(v):
            return None
        return f"{value!r} is not a colour (use #rrggbb, rgb(...) or a CSS colour name)"
    if name in _BOX_ATTRS:
        return None if _BOX.match(v) else f"{value!r} is not 1 to 4 sizes like '10px 25px'"
    if name == "line-height":
        return (
            None
            if _LINE_HEIGHT.match(v)
            else f"{value!r} is not a line height like '1.5' or '22px'"
        )
    if name in _LENGTH_ATTRS:
        if v == "auto" and name in {"height", "width"}:
            return None
        return None if _ONE_LENGTH.match(v) else f"{value!r} is not a size like '10px' or '50%'"
    choices = _CHOICES.get(name)
    if choices is not None and v not in choices:
        return f"{value!r} is not one of {', '.join(sorted(choices))}"
    return None


def lint_mjml(source: str) -> list[MjmlProblem]:
    """Everything wrong with ``source`` that mjml-python would pass without a word."""
    problems: list[MjmlProblem] = []

    def line_of(offset: int) -> int:
        return source.count("\n", 0, offset) + 1

    def add(offset: int, message: str) -> None:
        problems.append(MjmlProblem(line_of(offset), message))

    text = _COMMENT.sub(_blank, source)
    # CSS: checked on its own, then blanked so it is not read as tags.
    for block in _STYLE_BLOCK.finditer(text):
        css = block.group("css")
        if re.search(r"@import|url\s*\(|expression\s*\(|javascript:", css, re.I):
            add(
                block.start("css"),
                "CSS may not import or load anything (no external CSS, fonts or images)",
            )
    text = _STYLE_BLOCK.sub(
        lambda m: (
            m.group(0)[: m.start("css") - m.start()]
            + _blank_text(m.group("css"))
            + m.group(0)[m.end("css") - m.start() :]
        ),
        text,
    )

    for match in _JINJA.finditer(text):
        add(
            match.start(),
            f"leftover template syntax {match.group(0)!r}: a variable or tag was not rendered",
        )

    if not re.match(r"\s*<mjml[\s>]", text):
        add(0, "an MJML document starts with <mjml>")
    stack: list[tuple[str, int]] = []
    saw_lang = False
    for tag in _TAG.finditer(text):
        name = tag.group("name").lower()
        start = tag.start()
        if tag.group("close"):
            if name in KNOWN_TAGS:
                if not stack:
                    add(start, f"</{name}> closes nothing")
                elif stack[-1][0] != name:
                    open_name, open_at = stack[-1]
                    add(
                        start,
                        f"</{name}> found where </{open_name}> (opened on line {line_of(open_at)}) was expected",
                    )
                    stack = (
                        [s for s in stack if s[0] != name]
                        if any(s[0] == name for s in stack)
                        else stack
                    )
                else:
                    stack.pop()
            continue
        attrs = {
            a.group(1).lower(): _unquote(a.group(2)) for a in _ATTR.finditer(tag.group("attrs"))
        }
        if name == "mjml" or name.startswith("mj-"):
            if name not in KNOWN_TAGS:
                add(start, f"unknown tag <{name}> (mjml-python would copy it into the email as is)")
            if not tag.group("self") and name in KNOWN_TAGS:
                stack.append((name, start))
            if name == "mj-include":
                add(
                    start,
                    "<mj-include> is not supported: render partials with Jinja's {% include %}",
                )
            if name == "mjml" and (attrs.get("lang") or "").strip():
                saw_lang = True
            if name == "mj-font":
                add(
                    start,
                    "<mj-font> loads a web font from another server; use a font stack instead",
                )
            if name == "mj-image" and "alt" not in attrs:
                add(start, '<mj-image> needs an alt text (alt="" for a decorative image)')
            if name == "mj-social-element" and "src" not in attrs:
                add(
                    start,
                    "<mj-social-element> without src loads its icon from mjml.io; give it a src",
                )
        elif name in FORBIDDEN_HTML:
            add(start, f"<{name}> is not allowed in an email")
        elif name == "img" and "alt" not in attrs:
            add(start, '<img> needs an alt text (alt="" for a decorative image)')
        for attr, value in attrs.items():
            if value is None:
                continue
            why = _check_attr(name, attr, value)
            if why:
                add(start, f"<{name} {attr}>: {why}")
    if stack:
        name, at = stack[-1]
        add(at, f"<{name}> is never closed")
    if not saw_lang and "<mjml" in text:
        add(0, 'the <mjml> tag needs a lang attribute (e.g. <mjml lang="en">) for screen readers')
    problems.sort(key=lambda p: p.line)
    return problems


def _blank_text(text: str) -> str:
    return re.sub(r"[^\n]", " ", text)


def _unquote(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def inline_css(source: str) -> str:
    """The CSS of every ``<mj-style inline="inline">`` block in an MJML document."""
    return "\n".join(
        m.group("css")
        for m in _STYLE_BLOCK.finditer(_COMMENT.sub(_blank, source))
        if _INLINE.search(m.group("attrs"))
    )


_BODY = re.compile(r"(<body\b[^>]*>)(.*)(</body>)", re.S | re.I)
# Attributes premailer would otherwise copy out of styles into HTML (width="", bgcolor="", ...).
_NO_BASIC_ATTRIBUTES = ["align", "background", "bgcolor", "border", "height", "valign", "width"]


def _inline_body(page: str, css: str) -> str:
    """Apply ``css`` to the elements of the page's body, leaving everything else alone."""
    from premailer import Premailer  # imported late: loading cssutils takes a while

    found = _BODY.search(page)
    if found is None or not css.strip():
        return page
    body_open, body, body_close = found.groups()
    fragment = f"<html><head></head>{body_open}{body}{body_close}</html>"
    premailer = Premailer(
        fragment,
        css_text=[css],
        keep_style_tags=False,
        strip_important=False,
        disable_leftover_css=True,  # the rules stay in the head; nothing to add
        allow_network=False,
        allow_loading_external_files=False,
        disable_link_rewrites=True,
        disable_basic_attributes=_NO_BASIC_ATTRIBUTES,
        align_floating_images=False,
        remove_classes=False,
        exclude_pseudoclasses=True,
        include_star_selectors=False,
        cssutils_logging_level=logging.CRITICAL,
        method="html",
    )
    result = premailer.transform()
    inlined = _BODY.search(result)
    if inlined is None:  # pragma: no cover - premailer always writes a body back
        raise MjmlError("CSS inlining lost the email's <body>")
    return (
        page[: found.start()]
        + inlined.group(1)
        + inlined.group(2)
        + inlined.group(3)
        + page[found.end() :]
    )


def render_mjml(source: str) -> str:
    """The email HTML for MJML ``source``. Raises `MjmlError` (with lines) if the MJML is wrong."""
    problems = lint_mjml(source)
    if problems:
        raise MjmlError(problems)
    try:
        page = mjml2html(source, fonts={}, disable_comments=False)
    except ValueError as exc:
        # mjml-python's parse errors carry no position: line 0 means "somewhere"
        raise MjmlError([MjmlProblem(0, f"MJML does not compile: {exc}")]) from None
    return _inline_body(_filter_safe(page), inline_css(source))


# mjml-python hides <mj-preview> text as white 1px type, and collapses the gaps between
# columns with "font-size:0px"; spam filters read both as text hidden from the reader
# (SpamAssassin: HTML_FONT_LOW_CONTRAST, HTML_FONT_TINY_NORDNS, NORDNS_LOW_CONTRAST), as
# they read <mj-divider>'s 1px type. Hidden by display and height alone, the preview is
# plain text no one sees; a unitless 0 collapses the gaps and the divider just the same. tests/test_spamassassin.py scores the result.
_PREVIEW_STYLE = re.compile(
    r'<div style="display:none;font-size:1px;color:#ffffff;line-height:1px;'
    r'max-height:0px;max-width:0px;opacity:0;overflow:hidden;">'
)


_ZERO_FONT = re.compile(r"font-size:\s*0px")
_DIVIDER_FONT = re.compile(r'(style="border-top:[^"]*?)font-size:\s*1px')  # <mj-divider>


def _filter_safe(page: str) -> str:
    page = _PREVIEW_STYLE.sub(
        '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">', page, count=1
    )
    page = _DIVIDER_FONT.sub(r"\1font-size:0", page)
    return _ZERO_FONT.sub("font-size:0", page)
