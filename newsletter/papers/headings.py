"""Structured abstracts: section labels found, written in sentence case, one paragraph each.

Sources give sections either apart (PubMed's labelled ``AbstractText``, joined
with `labelled`) or glued into the running text ("BackgroundA range of ..."),
which `clean_abstract` separates into "Background: A range of ...".
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SECTION_HEADINGS = (
    "Background and Aims",
    "Background and Purpose",
    "Background and Objectives",
    "Background",
    "Introduction",
    "Context",
    "Importance",
    "Rationale",
    "Motivation",
    "Objectives",
    "Objective",
    "Aims",
    "Aim",
    "Purpose",
    "Goal",
    "Hypothesis",
    "Study Design",
    "Design, Setting, and Participants",
    "Design",
    "Setting",
    "Settings",
    "Participants",
    "Patients",
    "Population",
    "Interventions",
    "Intervention",
    "Exposures",
    "Exposure",
    "Main Outcomes and Measures",
    "Main Outcome Measures",
    "Outcome Measures",
    "Outcomes",
    "Materials and Methods",
    "Methods and Findings",
    "Methods and Materials",
    "Methodology",
    "Methods",
    "Method",
    "Approach",
    "Data Sources",
    "Study Selection",
    "Data Extraction",
    "Measurements",
    "Analysis",
    "Findings",
    "Results",
    "Result",
    "Interpretation",
    "Discussion",
    "Conclusions and Relevance",
    "Conclusions",
    "Conclusion",
    "Significance",
    "Implications",
    "Limitations",
    "Trial Registration",
    "Registration",
    "Funding",
    "Evidence before this study",
    "Added value of this study",
    "Implications of all the available evidence",
    "Summary",
    "What is already known",
)
_HEADINGS = "|".join(re.escape(h) for h in sorted(SECTION_HEADINGS, key=len, reverse=True))
# A heading glued to the next sentence ("BackgroundA range ..."), at the start of
# the abstract or after the end of the previous sentence.
_GLUED = re.compile(rf"(^|(?<=[.!?)\]])\s*|\n\s*)(?P<h>{_HEADINGS})(?P<next>[A-Z0-9])", re.M)
# Every glued heading shows as a heading's last letter followed by a capital or a digit:
# text without that pair has none, and skips the long alternation above.
_GLUED_HINT = re.compile("[" + "".join(sorted({h[-1] for h in SECTION_HEADINGS})) + "][A-Z0-9]")


def split_glued_headings(text: str) -> str:
    """'BackgroundA range...' → 'Background: A range...', each section its own paragraph.

    Headings are recognised at the start of a paragraph; after the end of a
    sentence only when the abstract itself opens with a glued heading.
    """
    if not _GLUED_HINT.search(text):
        return text.strip()  # what the loop below gives when nothing matches
    found = list(_GLUED.finditer(text))
    structured = bool(found) and found[0].start("h") == 0
    out: list[str] = []
    last = 0
    for m in found:
        start = m.start("h")
        at_paragraph = start == 0 or "\n" in text[max(0, m.start()) : start]
        if not (structured or at_paragraph):
            continue
        out.append(text[last:start].rstrip())
        if start:
            out.append("\n\n")
        out.append(f"{m.group('h')}: {m.group('next')}")
        last = m.end("next")
    out.append(text[last:])
    return "".join(out).strip()


def label(raw: str) -> str:
    """A structured-abstract label in sentence case: 'OBJECTIVES' → 'Objectives'."""
    raw = " ".join(raw.split()).rstrip(":")
    if raw.isupper():
        raw = raw.capitalize()
    return raw


def labelled(sections: Iterable[tuple[str, str]]) -> str:
    """Join (label, text) sections into paragraphs 'Label: text'."""
    parts = []
    for name, body in sections:
        body = body.strip()
        if not body:
            continue
        parts.append(f"{label(name)}: {body}" if name.strip() else body)
    return "\n\n".join(parts)


def clean_abstract(text: str) -> str:
    """An abstract after markup cleanup: glued section headings separated."""
    return split_glued_headings(text)
