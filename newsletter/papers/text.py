"""Text hygiene for paper records, applied once, at ingest.

Titles and abstracts are stored as small HTML fragments that keep only
``<i> <b> <sub> <sup>`` (sanitized with nh3, never with regexes). MathML and
TeX become readable text, hard wraps collapse to single spaces, and paragraph
breaks survive as one blank line (``"\\n\\n"``). Control characters are
removed and markup nested too deep loses its tags.

`plain_text` turns a stored fragment back into plain text (for search and
matching); `reading_text` does too for what a reader reads (the text/plain email
part, story drafts), keeping a superscript raised. Structured abstracts' section
labels live in `newsletter.papers.headings`, author names and title keys in
`newsletter.papers.names`.
"""

from __future__ import annotations

import html
import re

import lxml.html
import nh3
from lxml import etree

from newsletter.papers.mathtext import local_name, mathml_to_text, tex_to_text

ALLOWED_TAGS = frozenset({"i", "b", "sub", "sup"})
_NEEDS_SANITIZER = re.compile("[<>&\u00a0]")
_BLOCKS = frozenset(
    {
        "p",
        "div",
        "li",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "section",
        "table",
        "tr",
    }
)
# What only a tree walk can fix: MathML, tags to rename or turn into breaks,
# and <i>/<b> glued to the words around them. Anything else goes straight to nh3.
_NEEDS_TREE = re.compile(
    r"math|<(?:em|strong|italic|bold|p|div|li|ul|ol|h\d|br|blockquote|section|table|tr)\b"
    r"|[^\W\d_]<[ib]>|</[ib]>[^\W\d_]",
    re.I,
)
_RENAME = {"em": "i", "strong": "b", "italic": "i", "bold": "b"}
_MATH_WORD = re.compile("math", re.I)

# --- sanitizing -------------------------------------------------------------


# A fragment is what nh3 would give back unchanged when, outside the kept tags (bare and
# balanced), its text holds no other "<", no ">", no "&" but the entities nh3 writes, no
# U+00A0, and nothing the HTML parser's input preprocessing changes (CR, NUL).
_KEPT_TAG_SPLIT = re.compile(r"<(/?)(i|b|sub|sup)>")
# (two searches: a class of characters and a literal "&" scan fast; one alternation of
# both tried every branch at every character, twice as slow)
_UNSANITIZED_CHAR = re.compile("[<>\u00a0\r\x00]")
_UNSANITIZED_AMP = re.compile("&(?!(?:amp|lt|gt|nbsp);)")


def _unsanitized_text(text: str) -> bool:
    return bool(_UNSANITIZED_CHAR.search(text) or _UNSANITIZED_AMP.search(text))


def is_sanitized(fragment: str) -> bool:
    """True when `sanitize` would return ``fragment`` as it is (so nh3 need not run).

    Parsers sanitize what they produce and `validate` sanitizes every record again,
    whatever its source; this check, two regex passes, makes the second pass nearly free.
    """
    if fragment.startswith("\ufeff"):  # a leading BOM is dropped by the HTML parser
        return False
    if "<" not in fragment:
        return not _unsanitized_text(fragment)
    parts = _KEPT_TAG_SPLIT.split(fragment)  # text, "/" or "", tag name, text, ...
    if _unsanitized_text(" ".join(parts[0::3])):  # apart: "&am<i>p;" is no entity
        return False
    open_tags: list[str] = []
    for closing, name in zip(parts[1::3], parts[2::3], strict=True):
        if not closing:
            open_tags.append(name)
        elif not open_tags or open_tags.pop() != name:
            return False
    return not open_tags


def sanitize(fragment: str) -> str:
    """Keep only <i> <b> <sub> <sup> (no attributes); text stays escaped HTML."""
    if not _NEEDS_SANITIZER.search(fragment) or is_sanitized(fragment):
        return fragment  # nothing the sanitizer would change
    return nh3.clean(fragment, tags=set(ALLOWED_TAGS), attributes={}, strip_comments=True)


def plain_text(fragment: str) -> str:
    """A stored fragment as plain text: tags dropped, entities decoded."""
    if "<" not in fragment and "&" not in fragment:
        return fragment
    if is_sanitized(fragment):  # only the kept tags, balanced: dropping them is all nh3 does
        return html.unescape(_KEPT_TAG.sub("", fragment))
    return html.unescape(nh3.clean(fragment, tags=set(), attributes={}))


_SUPERSCRIPT = str.maketrans("0123456789+-−=()ni", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻⁼⁽⁾ⁿⁱ")
_SUP_SPAN = re.compile(r"<sup>((?:(?!</sup>).)*)</sup>", re.S)


def _raised(match: re.Match[str]) -> str:
    inner = html.unescape(_KEPT_TAG.sub("", match.group(1))).strip()
    if not inner:
        return ""
    raised = inner.translate(_SUPERSCRIPT)
    if all(ch in "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱ" for ch in raised):
        return html.escape(raised, quote=False)
    return html.escape(f"^{inner}" if " " not in inner else f"^({inner})", quote=False)


def reading_text(fragment: str) -> str:
    """A stored fragment as plain text for a reader: like `plain_text`, but a superscript
    stays raised ("10<sup>5</sup>" is "10⁵", not "105"; "x<sup>ab</sup>" is "x^ab")."""
    if "<sup>" in fragment:
        fragment = _SUP_SPAN.sub(_raised, fragment)
    return plain_text(fragment)


# --- hostile text: control characters, deep nesting -------------------------

# C0 and C1 control characters (a tab, line feed and carriage return are turned into
# whitespace first), and the characters that end a line in Unicode but not in HTML.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ufffe\uffff]")
_SCRUBBED_AWAY = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ufffe\uffff]")  # and tab, CR
# After `sanitize`, the only tags left are these, bare: a regex can walk them safely.
_KEPT_TAG = re.compile(r"<(/?)(i|b|sub|sup)>")
MAX_NESTING = 3  # <sup><i>…</i></sup> is as deep as real titles and abstracts go


def needs_scrub(text: str) -> bool:
    """True when `scrub` would change ``text``."""
    return _SCRUBBED_AWAY.search(text) is not None


def scrub(text: str) -> str:
    """Control characters removed (ESC, U+0001, DEL, C1); tabs and CR become whitespace."""
    if not text or not _SCRUBBED_AWAY.search(text):
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    return _CONTROLS.sub("", text)


def bound_nesting(fragment: str, depth: int = MAX_NESTING) -> str:
    """Markup nested deeper than ``depth`` loses its tags (the text stays).

    A title of 300 nested tags renders as 300 nested elements in the email, which
    mail clients and the MJML compiler cut off, taking the rest of the issue with it.
    Works on sanitized fragments only (bare, balanced ``<i> <b> <sub> <sup>``).
    """
    if fragment.count("<") - fragment.count("</") <= depth:  # fewer tags opened than allowed
        return fragment
    out: list[str] = []
    stack: list[bool] = []  # per open tag: was it kept?
    at = 0
    for match in _KEPT_TAG.finditer(fragment):
        out.append(fragment[at : match.start()])
        at = match.end()
        if match.group(1):  # a closing tag
            if stack and stack.pop():
                out.append(match.group(0))
        else:
            keep = sum(stack) < depth
            stack.append(keep)
            if keep:
                out.append(match.group(0))
    out.append(fragment[at:])
    return "".join(out)


# --- whitespace -----------------------------------------------------------


def one_line(text: str, limit: int | None = None) -> str:
    """Every run of whitespace, line breaks included, as one space; cut to `limit` characters."""
    joined = " ".join(str(text).split())
    return joined if limit is None else joined[:limit]


_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def collapse(text: str) -> str:
    """Hard wraps and runs of whitespace become single spaces; blank lines stay paragraph breaks."""
    if "\n" not in text:  # one paragraph: the same as below, without the regex
        return " ".join(text.split())
    paragraphs = _PARAGRAPH_BREAK.split(text.strip())
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


# --- markup cleanup ---------------------------------------------------------


def _fix_tree(root: lxml.html.HtmlElement) -> None:
    for el in list(root.iterdescendants()):
        if not isinstance(el.tag, str):
            continue
        name = local_name(el.tag)
        if name == "math":
            text = mathml_to_text(el)
            _replace_with_markup(el, text)
            continue
        if name in _RENAME:
            el.tag = _RENAME[name]
            name = el.tag
        if name in ("i", "b"):
            _unglue(el)
        elif name in _BLOCKS:
            # a block's end is a paragraph break once the tag itself is gone
            el.tail = "\n\n" + (el.tail or "")
        elif name == "br":
            el.tail = " " + (el.tail or "")


def _replace_with_markup(el: etree._Element, markup: str) -> None:
    parent = el.getparent()
    if parent is None:
        return
    tail = el.tail or ""
    holder = lxml.html.fragment_fromstring(f" {markup} ", create_parent="span")
    index = parent.index(el)
    parent.remove(el)
    holder.tail = tail
    parent.insert(index, holder)  # span is dropped by the sanitizer, its content kept


def _unglue(el: etree._Element) -> None:
    """'at the<i>TERT</i>gene' → 'at the <i>TERT</i> gene' (words glued to markup)."""
    inner = "".join(el.itertext())
    if not inner:
        return
    prev = el.getprevious()
    parent = el.getparent()
    if prev is not None:
        before = prev.tail or ""
        if before and before[-1].isalpha() and inner[0].isalpha():
            prev.tail = before + " "
    elif parent is not None:
        before = parent.text or ""
        if before and before[-1].isalpha() and inner[0].isalpha():
            parent.text = before + " "
    tail = el.tail or ""
    if tail and tail[0].isalpha() and inner[-1].isalpha():
        el.tail = " " + tail


def clean_markup(fragment: str) -> str:
    """An HTML fragment (PubMed XML, RSS HTML) as a clean stored fragment."""
    # without a "<" only the word "math" can ask for the tree: a cheap search finds it
    if _NEEDS_TREE.search(fragment) if "<" in fragment else _MATH_WORD.search(fragment):
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
        _fix_tree(root)
        fragment = lxml.html.tostring(root, encoding="unicode")
        fragment = (
            fragment[len("<div>") : -len("</div>")] if fragment.startswith("<div>") else fragment
        )
    return collapse(sanitize(fragment))


def clean_plain(text: str, *, tex: bool = True) -> str:
    """Plain text (arXiv Atom, bioRxiv JSON) as a clean stored fragment."""
    escaped = html.escape(text, quote=False)
    if tex:
        escaped = tex_to_text(escaped)
    return collapse(sanitize(escaped))


# TeX worth converting: a \command, or $...$ holding TeX (\, ^, _ or {). Prices like
# "$5 to $10" stay as they are.
_TEX_MATH = re.compile(r"(?<!\\)\$\$?[^$]*?[\\^_{][^$]*?(?<!\\)\$\$?")
_TEX_HINT = re.compile(r"\\[A-Za-z]{2,}|\\[%&_#$]|" + _TEX_MATH.pattern)
_DOLLAR = "\x00"  # a "$" that is not TeX, hidden while the TeX is converted


def clean_tex(fragment: str) -> str:
    """A stored fragment with any TeX in it made readable (every source passes here)."""
    if ("\\" not in fragment and "$" not in fragment) or not _TEX_HINT.search(fragment):
        return fragment  # every kind of TeX starts with a backslash or a dollar
    spans = [(m.start(), m.end()) for m in _TEX_MATH.finditer(fragment)]
    hidden, at = [], 0
    for start, end in spans:
        hidden.append(fragment[at:start].replace("$", _DOLLAR) + fragment[start:end])
        at = end
    hidden.append(fragment[at:].replace("$", _DOLLAR))
    text = tex_to_text("".join(hidden)).replace(_DOLLAR, "$")
    return collapse(sanitize(text))


def clean_title(fragment: str) -> str:
    """A title: one line, no trailing period (a trailing '...' or abbreviation stays)."""
    title = " ".join(fragment.split())
    if title.startswith("[") and title.rstrip(".").endswith("]"):
        title = title.rstrip(".")[1:-1]  # PubMed marks translated titles with brackets
    if (
        title.endswith(".")
        and not title.endswith("..")
        and not re.search(r"\b(?:et al|etc)\.$", title)
    ):
        title = title[:-1].rstrip()
    return title
