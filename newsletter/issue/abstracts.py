"""Reading an abstract: its sections, their roles, its sentences and its numbers.

A stored abstract is a small HTML fragment; a structured one has one paragraph per
section, each opening with its label ("Results: ..."), as ingest writes them. Some
sources run the labels on in one paragraph ("BACKGROUND: ... METHODS: ..."); those
are split too, but only at labels this module knows, so "Aim: x" inside a sentence
stays text.

Used by the cards (trimming a long abstract keeps Results and Conclusion) and by the
story drafts (result sentences with figures, the conclusion).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from itertools import pairwise

from newsletter.papers.text import reading_text

# Labels of structured abstracts (PubMed, Radiology, JAMA, Lancet, medRxiv ...), by role.
ROLES: dict[str, str] = {
    **dict.fromkeys(
        (
            "background", "introduction", "context", "purpose", "objective", "objectives",
            "aim", "aims", "rationale and objectives", "motivation", "question", "rationale",
            "background and purpose", "background and objectives", "importance",
        ),
        "background",
    ),
    **dict.fromkeys(
        (
            "methods", "method", "materials and methods", "design", "study design", "setting",
            "participants", "patients", "approach", "data sources", "main outcome measures",
            "main outcomes", "main outcomes and measures", "evidence acquisition", "exposures",
            "interventions", "design, setting, and participants", "study selection",
            "data extraction", "materials", "subjects",
        ),
        "methods",
    ),
    **dict.fromkeys(("results", "findings", "evidence synthesis", "observations"), "results"),
    **dict.fromkeys(
        (
            "conclusion", "conclusions", "interpretation", "meaning", "discussion",
            "summary", "conclusions and relevance", "significance", "implications",
            "clinical relevance statement", "clinical relevance", "key points",
            "advances in knowledge", "implications for patient care", "critical relevance statement",
        ),
        "conclusion",
    ),
    **dict.fromkeys(
        ("funding", "trial registration", "availability", "limitations", "abstract"), "other"
    ),
}  # fmt: skip
KNOWN_LABELS = frozenset(ROLES)
# Labels that say why a study matters, in the order a why-it-matters line prefers them.
RELEVANCE_LABELS = (
    "clinical relevance statement",
    "critical relevance statement",
    "clinical relevance",
    "significance",
    "importance",
    "implications for patient care",
    "meaning",
)

_LEADING_LABEL = re.compile(r"^\s*(?:<b>)?([A-Za-z][A-Za-z ,/&()-]{0,60}?)\s*:(?:</b>)?\s+")
_RUN_ON_LABEL = re.compile(r"(?<=[.!?] )(?:<b>)?([A-Z][A-Za-z ,/&()-]{1,60}?):(?:</b>)?\s+")

_ABBREVIATIONS = (
    "e.g", "i.e", "et al", "vs", "Fig", "Figs", "approx", "cf", "ca", "No", "Dr", "Prof",
    "incl", "resp", "Ref", "Eq", "al", "etc", "St", "Mr", "Ms", "Jr", "Inc", "Ltd",
)  # fmt: skip
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])[\"”’)]?\s+(?=[A-Z0-9(\"“])")

# A figure: 0.93, 27%, 41 212 or 41,212 (one number), −3.5, 1.2e-3, 10⁵ (a power: not 10).
# Not the digit in VO2 or T2.
_POWER = "⁻⁺⁰¹²³⁴⁵⁶⁷⁸⁹"
_NUMBER = re.compile(
    r"(?<![\w.])[-−–]?(?:\d{1,3}(?:[,\u2009\u202f ]\d{3})+(?!\d)|\d+(?:\.\d+)?)"
    rf"(?:[{_POWER}]*[⁰¹²³⁴⁵⁶⁷⁸⁹])?"
)
_FROM_POWER = str.maketrans(_POWER, "-+0123456789")


@dataclass(frozen=True)
class Section:
    """One part of an abstract: its label as written ("" if none), its role, its body."""

    label: str
    role: str  # background, methods, results, conclusion, other, or "" (unlabelled)
    html: str

    @property
    def text(self) -> str:
        return " ".join(reading_text(self.html).split())


def role_of(label: str) -> str:
    return ROLES.get(" ".join(label.lower().split()), "")


def _split_run_on(paragraph: str) -> list[str]:
    """A paragraph with several known labels run on, as one paragraph per label."""
    cuts = [m.start() for m in _RUN_ON_LABEL.finditer(paragraph) if role_of(m.group(1))]
    if not cuts:
        return [paragraph]
    bounds = [0, *cuts, len(paragraph)]
    return [paragraph[a:b].strip() for a, b in pairwise(bounds)]


def sections(abstract: str) -> list[Section]:
    """The abstract's sections in order; an unstructured abstract is one section with role ""."""
    out: list[Section] = []
    for para in re.split(r"\n\s*\n", abstract.strip()):
        for piece in _split_run_on(" ".join(para.split())):
            if not piece:
                continue
            match = _LEADING_LABEL.match(piece)
            if match and (role_of(match.group(1)) or _looks_like_label(match.group(1))):
                label = match.group(1).strip()
                out.append(Section(label, role_of(label) or "other", piece[match.end() :]))
            else:
                out.append(Section("", "", piece))
    return out


def _looks_like_label(text: str) -> bool:
    words = text.split()
    return 0 < len(words) <= 4 and (text.isupper() or text.istitle())


def is_structured(parts: list[Section]) -> bool:
    return sum(1 for s in parts if s.label) >= 2


def split_sentences(text: str) -> list[str]:
    """Sentences of a plain text, not broken after "e.g.", "et al.", "vs." or a decimal point."""
    pieces = _SENTENCE_BREAK.split(" ".join(text.split()))
    out: list[str] = []
    for piece in pieces:
        if out and _ends_with_abbreviation(out[-1]):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return [s.strip() for s in out if s.strip()]


def _ends_with_abbreviation(sentence: str) -> bool:
    last = sentence.rstrip(".").rsplit(" ", 1)[-1].lstrip("(")
    return sentence.endswith(".") and (
        last in _ABBREVIATIONS or (len(last) == 1 and last.isupper())
    )


def _canonical(raw: str) -> str:
    power = raw.lstrip("-−–").lstrip("0123456789.,\u2009\u202f ")
    if power:  # 10⁵ is "10^5"
        return f"{_canonical(raw[: -len(power)])}^{power.translate(_FROM_POWER)}"
    raw = raw.replace("−", "-").replace("–", "-")
    raw = re.sub(r"[,\u2009\u202f ]", "", raw)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return raw
    return (
        format(value.normalize(), "f") if value == value.to_integral() else str(value.normalize())
    )


def numbers(text: str) -> set[str]:
    """The figures in a plain text, canonical ("41 212" and "41,212" are "41212"; "0.90" is "0.9")."""
    found: set[str] = set()
    for match in _NUMBER.finditer(text):
        raw = match.group(0)
        found.add(_canonical(raw).lstrip("-"))
    return found


def source_numbers(text: str) -> set[str]:
    """`numbers`, plus each group of a grouped figure ("41 212" also gives 41 and 212)."""
    found = numbers(text)
    for part in re.findall(rf"\d+(?:\.\d+)?(?![\d{_POWER}])", text):  # 10 of 10⁵ is no figure
        found.add(_canonical(part))
    return found


def has_figure(sentence: str) -> bool:
    """Whether a sentence reports a figure (a number that is not only a year or a list mark)."""
    for match in _NUMBER.finditer(sentence):
        value = match.group(0).strip("-−–")
        if re.fullmatch(r"(?:19|20)\d\d", value):
            continue
        return True
    return False


def invented_numbers(draft: str, source: str) -> list[str]:
    """Figures in ``draft`` that ``source`` does not have (an empty list: none invented)."""
    have = source_numbers(source)
    return sorted(n for n in numbers(draft) if n not in have)
