"""Mathematics in titles and abstracts as readable text: MathML and TeX.

Both become plain characters with ``<sub>``, ``<sup>``, ``<i>`` and ``<b>``
markup, the only markup a stored paper keeps (`newsletter.papers.text`).
"""

from __future__ import annotations

import re
import unicodedata

from lxml import etree

# --- MathML -----------------------------------------------------------------

_COMBINING = {
    ".": "\u0307",
    "˙": "\u0307",
    "¨": "\u0308",
    "^": "\u0302",
    "~": "\u0303",
    "¯": "\u0304",
    "→": "\u20d7",
}


def local_name(tag: object) -> str:
    """An XML tag's name without its namespace or prefix, lower-cased."""
    if not isinstance(tag, str):
        return ""
    tag = tag.rsplit("}", 1)[-1]
    return tag.rsplit(":", 1)[-1].lower()


def mathml_to_text(element: etree._Element) -> str:
    """Readable text (with <sub>/<sup> markup) for a MathML element."""
    return " ".join(_math(element).split())


def _math(el: etree._Element) -> str:
    name = local_name(el.tag)
    kids = [k for k in el if isinstance(k.tag, str)]
    if name in ("mi", "mn", "mo", "mtext", "ms"):
        return "".join(el.itertext())
    if name in ("msub", "msup", "msubsup") and kids:
        base = _math(kids[0])
        out = base
        if name in ("msub", "msubsup") and len(kids) > 1:
            out += f"<sub>{_math(kids[1])}</sub>"
        if name == "msup" and len(kids) > 1:
            out += f"<sup>{_math(kids[1])}</sup>"
        if name == "msubsup" and len(kids) > 2:
            out += f"<sup>{_math(kids[2])}</sup>"
        return out
    if name in ("mover", "munder", "munderover") and kids:
        base = _math(kids[0])
        accent = _math(kids[1]).strip() if len(kids) > 1 else ""
        if name == "mover" and accent in _COMBINING and len(base) >= 1:
            return base + _COMBINING[accent]
        return base + "".join(_math(k) for k in kids[1:])
    if name == "mfrac" and len(kids) == 2:
        return f"{_math(kids[0])}/{_math(kids[1])}"
    if name == "msqrt":
        return "√(" + "".join(_math(k) for k in kids) + ")"
    if name == "mmultiscripts" and kids:
        base = _math(kids[0])
        pre: list[str] = []
        post: list[str] = []
        target = post
        for k in kids[1:]:
            if local_name(k.tag) == "mprescripts":
                target = pre
                continue
            target.append("" if local_name(k.tag) == "none" else _math(k))
        out = ""
        if pre:
            sub, sup = pre[0::2], pre[1::2]
            out += "".join(f"<sub>{s}</sub>" for s in sub if s)
            out += "".join(f"<sup>{s}</sup>" for s in sup if s)
        out += base
        if post:
            sub, sup = post[0::2], post[1::2]
            out += "".join(f"<sub>{s}</sub>" for s in sub if s)
            out += "".join(f"<sup>{s}</sup>" for s in sup if s)
        return out
    if name == "none":
        return ""
    return "".join(_math(k) for k in kids) if kids else "".join(el.itertext())


# --- TeX --------------------------------------------------------------------

# fmt: off
_TEX_SYMBOLS = {
    'alpha': 'α', 'beta': 'β', 'gamma': 'γ', 'delta': 'δ', 'epsilon': 'ε', 'varepsilon': 'ε',
    'zeta': 'ζ', 'eta': 'η', 'theta': 'θ', 'kappa': 'κ', 'lambda': 'λ', 'mu': 'μ', 'nu': 'ν',
    'xi': 'ξ', 'pi': 'π', 'rho': 'ρ', 'sigma': 'σ', 'tau': 'τ', 'phi': 'φ', 'varphi': 'φ',
    'chi': 'χ', 'psi': 'ψ', 'omega': 'ω', 'Gamma': 'Γ', 'Delta': 'Δ', 'Theta': 'Θ', 'Lambda': 'Λ',
    'Sigma': 'Σ', 'Phi': 'Φ', 'Psi': 'Ψ', 'Omega': 'Ω', 'Pi': 'Π', 'times': '×', 'cdot': '·',
    'pm': '±', 'mp': '∓', 'leq': '≤', 'le': '≤', 'geq': '≥', 'ge': '≥', 'neq': '≠', 'ne': '≠',
    'approx': '≈', 'sim': '~', 'simeq': '≃', 'infty': '∞', 'to': '→', 'rightarrow': '→',
    'leftarrow': '←', 'Rightarrow': '⇒', 'in': '∈', 'partial': '∂', 'nabla': '∇', 'sum': 'Σ',
    'prod': 'Π', 'int': '∫', 'sqrt': '√', 'ell': 'ℓ', 'hbar': 'ħ', 'circ': '°', 'degree': '°',
    'langle': '⟨', 'rangle': '⟩', 'ldots': '…', 'dots': '…', 'cdots': '⋯', 'prime': '′', '%': '%',
    '&': '&', '_': '_', '#': '#', '$': '$', '{': '{', '}': '}', ',': ' ', ';': ' ', 'quad': ' ',
    'qquad': ' ', 'textasciitilde': '~', 'log': 'log', 'exp': 'exp', 'sin': 'sin', 'cos': 'cos',
    'max': 'max', 'min': 'min', 'lim': 'lim', 'AA': 'Å', 'iota': 'ι', 'upsilon': 'υ', 'Xi': 'Ξ',
    'Upsilon': 'Υ', 'vartheta': 'ϑ', 'lt': '&lt;', 'gt': '&gt;', 'lesssim': '≲', 'gtrsim': '≳',
    'll': '≪', 'gg': '≫', 'propto': '∝', 'div': '÷', 'equiv': '≡', 'forall': '∀', 'exists': '∃',
    'subset': '⊂', 'subseteq': '⊆', 'cup': '∪', 'cap': '∩', 'emptyset': '∅', 'otimes': '⊗',
    'oplus': '⊕', 'uparrow': '↑', 'downarrow': '↓', 'leftrightarrow': '↔', 'mapsto': '↦',
    'ast': '∗', 'star': '⋆', 'bullet': '•', 'dagger': '†', 'ln': 'ln', 'det': 'det', 'tan': 'tan',
    'tanh': 'tanh', 'arg': 'arg', 'left': '', 'right': '', 'big': '', 'Big': '', 'bigl': '',
    'bigr': '', 'Bigl': '', 'Bigr': '', '!': '', ':': ' ',
}
# named functions: "n\log n" reads "n log n", not "nlog n"
_FUNCTIONS = frozenset({'log', 'ln', 'exp', 'sin', 'cos', 'tan', 'tanh', 'max', 'min', 'lim', 'det', 'arg'})
# fmt: on
_TEX_ACCENTS = {
    "'": "\u0301",
    "`": "\u0300",
    '"': "\u0308",
    "^": "\u0302",
    "~": "\u0303",
    "c": "\u0327",
    "v": "\u030c",
    "=": "\u0304",
    ".": "\u0307",
    "u": "\u0306",
    "H": "\u030b",
    "r": "\u030a",
}
_TEX_STYLE = {
    "textit": "i",
    "emph": "i",
    "mathit": "i",
    "textbf": "b",
    "mathbf": "b",
    "boldsymbol": "b",
}
_ACCENT_RE = re.compile(
    r"""\\(['`"^~=.]|[cvuHr](?=[{\s]))\s*(?:\{\s*([A-Za-z]|\\[ij])\s*\}|([A-Za-z]))"""
)
_STYLE_RE = re.compile(r"\\(textit|emph|mathit|textbf|mathbf|boldsymbol)\s*\{([^{}]*)\}")
_PLAIN_RE = re.compile(
    r"\\(mathrm|text|textrm|mathcal|mathbb|mathsf|mathtt|operatorname|texttt|textsc|mbox|rm|bf|it)\s*\{([^{}]*)\}"
)
_SCRIPT_RE = re.compile(r"([_^])\s*(\{[^{}]*\}|\\[A-Za-z]+|[^\s{}\\])")
_COMMAND_RE = re.compile(r"\\([A-Za-z]+|[%&_#${},;!:])")
_FRAC_ARG = r"\s*(\{[^{}]*\}|[^\s{}\\]|\\[A-Za-z]+)"
_FRAC_RE = re.compile(r"\\[dt]?frac" + _FRAC_ARG + _FRAC_ARG)
_MATH_ACCENTS = {
    "hat": "\u0302",
    "widehat": "\u0302",
    "bar": "\u0304",
    "overline": "\u0304",
    "tilde": "\u0303",
    "widetilde": "\u0303",
    "vec": "\u20d7",
    "dot": "\u0307",
    "ddot": "\u0308",
}
_MATH_ACCENT_RE = re.compile(
    r"\\(" + "|".join(_MATH_ACCENTS) + r")\b\s*(?:\{([^{}]*)\}|([A-Za-z]))"
)
# text-mode commands: a link's text, dots, and the letters TeX spells as commands
_LINK_RE = re.compile(r"\\(?:url|nolinkurl)\s*\{([^{}]*)\}|\\href\s*\{[^{}]*\}\s*\{([^{}]*)\}")
_TEXT_LETTERS = {
    "ss": "ß",
    "o": "ø",
    "O": "Ø",
    "aa": "å",
    "ae": "æ",
    "AE": "Æ",
    "oe": "œ",
    "OE": "Œ",
    "l": "ł",
    "L": "Ł",
}
# a control word eats the space after it ("\o ystein" is "øystein"); "{}" keeps it
_TEXT_LETTER_RE = re.compile(
    r"\\(" + "|".join(sorted(_TEXT_LETTERS, key=len, reverse=True)) + r")(?:\{\}|(?![A-Za-z])\s?)"
)
_DOTS_RE = re.compile(r"\\(?:ldots|dots)(?:\{\})?(?![A-Za-z])")
_MATH_RE = re.compile(r"(?<!\\)\$\$?(.+?)(?<!\\)\$\$?", re.S)


def _accent(match: re.Match[str]) -> str:
    letter = match.group(2) or match.group(3) or ""
    letter = {"\\i": "i", "\\j": "j"}.get(letter, letter)
    return unicodedata.normalize("NFC", letter + _TEX_ACCENTS[match.group(1)])


def _tex_math(body: str) -> str:
    body = _STYLE_RE.sub(
        lambda m: f"<{_TEX_STYLE[m.group(1)]}>{m.group(2)}</{_TEX_STYLE[m.group(1)]}>", body
    )
    body = _PLAIN_RE.sub(lambda m: m.group(2), body)
    body = _MATH_ACCENT_RE.sub(_math_accent, body)
    body = _FRAC_RE.sub(_fraction, body)

    def script(m: re.Match[str]) -> str:
        arg = m.group(2)
        arg = arg[1:-1] if arg.startswith("{") else arg
        tag = "sub" if m.group(1) == "_" else "sup"
        return f"<{tag}>{_tex_commands(arg).strip()}</{tag}>"

    body = _SCRIPT_RE.sub(script, body)
    body = _tex_commands(body)
    return body.replace("{", "").replace("}", "")


def _math_accent(m: re.Match[str]) -> str:
    base = _tex_commands(m.group(2) if m.group(2) is not None else m.group(3))
    if len(base.strip()) == 1:
        return unicodedata.normalize("NFC", base.strip() + _MATH_ACCENTS[m.group(1)])
    return base


def _fraction(m: re.Match[str]) -> str:
    """\\frac{a+b}{2} → (a+b)/2; \\frac12 → 1/2."""
    parts = []
    for arg in (m.group(1), m.group(2)):
        arg = _tex_commands(arg[1:-1] if arg.startswith("{") else arg).strip()
        simple = arg.replace(".", "").isalnum() or len(arg) <= 1
        parts.append(arg if simple else f"({arg})")
    return "/".join(parts)


def _tex_command(m: re.Match[str]) -> str:
    name = m.group(1)
    shown = _TEX_SYMBOLS.get(name, name)
    if name in _FUNCTIONS and m.start() > 0 and m.string[m.start() - 1].isalnum():
        return " " + shown
    return shown


def _tex_commands(text: str) -> str:
    return _COMMAND_RE.sub(_tex_command, text)


def tex_to_text(text: str) -> str:
    """TeX inside (already HTML-escaped) text as readable text with <sub>/<sup>/<i>/<b>."""
    if "\\" not in text and "$" not in text:
        return text
    text = _ACCENT_RE.sub(_accent, text)
    # "~" is TeX's unbreakable space; \\sim, made after this, stays a tilde
    text = text.replace("~", " ")
    text = _MATH_RE.sub(lambda m: _tex_math(m.group(1)), text)
    text = _LINK_RE.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), text)
    text = _TEXT_LETTER_RE.sub(lambda m: _TEXT_LETTERS[m.group(1)], text)
    text = _DOTS_RE.sub("…", text)
    text = _STYLE_RE.sub(
        lambda m: f"<{_TEX_STYLE[m.group(1)]}>{m.group(2)}</{_TEX_STYLE[m.group(1)]}>", text
    )
    text = _PLAIN_RE.sub(lambda m: m.group(2), text)
    text = re.sub(r"\\([%&_#$])", r"\1", text)
    text = re.sub(r"\{\\(?:it|em)\s+([^{}]*)\}", r"<i>\1</i>", text)
    text = re.sub(r"\{\\bf\s+([^{}]*)\}", r"<b>\1</b>", text)
    return text.replace("``", "“").replace("''", "”")
