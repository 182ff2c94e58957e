"""Text hygiene: what a reader sees of titles, abstracts and author lists."""

from __future__ import annotations

import pytest
from lxml import etree

from newsletter.papers.headings import labelled, split_glued_headings
from newsletter.papers.mathtext import mathml_to_text, tex_to_text
from newsletter.papers.names import normalize_name, split_authors, title_key
from newsletter.papers.text import (
    clean_markup,
    clean_plain,
    clean_tex,
    clean_title,
    collapse,
    is_sanitized,
    plain_text,
    reading_text,
    sanitize,
)

MML = 'xmlns:mml="http://www.w3.org/1998/Math/MathML"'


def test_sanitizer_keeps_only_inline_markup() -> None:
    dirty = (
        '<p class="x">A <i style="c">b</i> <b>c</b> H<sub>2</sub>O x<sup>2</sup> '
        '<a href="http://e">link</a><script>alert(1)</script><img src=x onerror=y></p>'
    )
    assert sanitize(dirty) == "A <i>b</i> <b>c</b> H<sub>2</sub>O x<sup>2</sup> link"


def test_clean_markup_renames_em_and_strong_and_keeps_escaped_text() -> None:
    assert clean_markup("<em>in vivo</em> and <strong>p &lt; 0.05</strong>") == (
        "<i>in vivo</i> and <b>p &lt; 0.05</b>"
    )


def test_html_paragraphs_become_paragraph_breaks() -> None:
    assert clean_markup(
        "<p>First part.</p><p>Second<br>part.</p><ul><li>a</li><li>b</li></ul>"
    ) == ("First part.\n\nSecond part.\n\na\n\nb")


def test_markup_glued_to_words_gets_spaces() -> None:
    assert clean_markup("variants at the<i>TERT</i>gene region") == (
        "variants at the <i>TERT</i> gene region"
    )
    # subscripts belong to their word
    assert clean_markup("LE<sub>min</sub> was lower") == "LE<sub>min</sub> was lower"


def test_mathml_becomes_readable_text() -> None:
    vo2 = etree.fromstring(
        f"<mml:math {MML}><mml:msub><mml:mrow><mml:mover><mml:mrow><mml:mi>V</mml:mi></mml:mrow>"
        "<mml:mo>.</mml:mo></mml:mover><mml:mi>O</mml:mi></mml:mrow><mml:mrow><mml:mn>2</mml:mn>"
        "<mml:mi>max</mml:mi></mml:mrow></mml:msub></mml:math>"
    )
    assert mathml_to_text(vo2) == "V\u0307O<sub>2max</sub>"
    helium = etree.fromstring(
        f"<mml:math {MML}><mml:mrow><mml:mmultiscripts><mml:mrow><mml:mi>He</mml:mi></mml:mrow>"
        "<mml:mprescripts/><mml:none/><mml:mrow><mml:mn>3</mml:mn></mml:mrow></mml:mmultiscripts>"
        "<mml:mtext> </mml:mtext><mml:mi>MRI</mml:mi></mml:mrow></mml:math>"
    )
    assert mathml_to_text(helium) == "<sup>3</sup>He MRI"


def test_mathml_inside_an_html_string() -> None:
    text = clean_markup(
        f"uptake (<mml:math {MML}><mml:msup><mml:mi>x</mml:mi><mml:mn>2</mml:mn></mml:msup></mml:math>) rose"
    )
    assert text == "uptake ( x<sup>2</sup> ) rose"


@pytest.mark.parametrize(
    ("tex", "shown"),
    [
        ("range $10^{31}$ to $10^{32}$", "range 10<sup>31</sup> to 10<sup>32</sup>"),
        ("the $e^+e^-$-collider", "the e<sup>+</sup>e<sup>-</sup>-collider"),
        ("Poincar\\'{e} section", "Poincaré section"),
        ('Schr\\"odinger', "Schrödinger"),
        ("$\\alpha_{i} \\leq 0.3$", "α<sub>i</sub> ≤ 0.3"),
        ("$\\mathrm{SO}(3)$ and 5\\% gain", "SO(3) and 5% gain"),
        ("\\textit{in silico} work", "<i>in silico</i> work"),
        ("a price of $5 and no math", "a price of $5 and no math"),
    ],
)
def test_tex_becomes_readable_text(tex: str, shown: str) -> None:
    assert tex_to_text(tex) == shown


def test_plain_text_is_escaped_before_tex_adds_markup() -> None:
    assert clean_plain("p<0.05 and $x^2$ <b>not bold</b>") == (
        "p&lt;0.05 and x<sup>2</sup> &lt;b&gt;not bold&lt;/b&gt;"
    )
    assert plain_text(clean_plain("p<0.05 & q")) == "p<0.05 & q"


def test_hard_wraps_collapse_and_paragraphs_stay() -> None:
    assert collapse("  one\ntwo   three\n\n\n  four\nfive ") == "one two three\n\nfour five"


def test_structured_abstract_labels_are_kept_in_sentence_case() -> None:
    assert labelled([("OBJECTIVES", "To test."), ("Methods", "We did."), ("", "Unlabelled.")]) == (
        "Objectives: To test.\n\nMethods: We did.\n\nUnlabelled."
    )


def test_glued_medrxiv_headings_are_separated() -> None:
    glued = "BackgroundA range of estimates exist. MethodsWe used data. ConclusionsIt works."
    assert split_glued_headings(glued) == (
        "Background: A range of estimates exist.\n\nMethods: We used data.\n\nConclusions: It works."
    )
    # a heading glued to an acronym
    assert split_glued_headings("BackgroundSARS-CoV-2 spread. MethodsCT scans were read.") == (
        "Background: SARS-CoV-2 spread.\n\nMethods: CT scans were read."
    )
    # a heading word in running text is left alone
    assert split_glued_headings("Our Results are robust. Background noise.") == (
        "Our Results are robust. Background noise."
    )
    # a heading glued after a paragraph break, in an otherwise plain abstract
    assert split_glued_headings("We built it.\n\nImportanceWe show why.") == (
        "We built it.\n\nImportance: We show why."
    )


@pytest.mark.parametrize(
    ("raw", "title"),
    [
        (
            "Occupational exposure and thyroid function.",
            "Occupational exposure and thyroid function",
        ),
        ("Is it real?", "Is it real?"),
        ("Wait for it...", "Wait for it..."),
        ("Effects of vitamin D.", "Effects of vitamin D"),
        ("A reply to Smith et al.", "A reply to Smith et al."),
        ("[Translated title in brackets].", "Translated title in brackets"),
        ("A study of  wrapped\n  lines.", "A study of wrapped lines"),
    ],
)
def test_titles_lose_a_trailing_period(raw: str, title: str) -> None:
    assert clean_title(raw) == title


def test_author_lists_are_split_and_normalized() -> None:
    assert split_authors("Bruce, E. A.; Huang, M.-L.; Tighe, S.") == [
        "E. A. Bruce",
        "M.-L. Huang",
        "S. Tighe",
    ]
    assert split_authors("Weizhen Li, Jianbo Lin, and Zhuosong Jiang") == [
        "Weizhen Li",
        "Jianbo Lin",
        "Zhuosong Jiang",
    ]
    assert split_authors("Smith, J., Jones, K. L.") == ["J. Smith", "K. L. Jones"]
    assert split_authors("Canadian Respiratory Research Network") == [
        "Canadian Respiratory Research Network"
    ]
    assert normalize_name("  Vuopionperä,   Raimo ") == "Raimo Vuopionperä"


def test_title_key_ignores_case_accents_markup_and_punctuation() -> None:
    assert title_key("Deep <i>Learning</i>: Café-Study!") == title_key("deep learning cafe study")


# The pieces hostile and ordinary fragments are made of: kept and other tags, balanced or not,
# entities nh3 writes and others, bare "&", "<", ">", and what the HTML parser itself changes.
_PIECES = (
    "<i>", "</i>", "<b>", "</b>", "<sub>", "</sub>", "<sup>", "</sup>", "<I>", "<br>", "<p>",
    "</p>", "<em>", "<script>", "<!-- c -->", "&amp;", "&lt;", "&gt;", "&nbsp;", "&quot;",
    "&#39;", "&copy;", "&", "<", ">", "\u00a0", "\r", "\x00", "\ufeff", "\x01", "\n", " ",
    "a", "word", "CT", "2", "é", "\"", "'", "&am", "p;", "lt;",
)  # fmt: skip


def test_the_fast_path_gives_what_nh3_gives() -> None:
    """sanitize and plain_text skip nh3 for clean fragments (collapse its regex for one
    paragraph): their answers must not change."""
    import html
    import random
    import re

    import nh3

    def sanitize_before(fragment: str) -> str:  # as it was: nh3 unless nothing to escape
        if not re.search("[<>&\u00a0]", fragment):
            return fragment
        return nh3.clean(
            fragment, tags={"i", "b", "sub", "sup"}, attributes={}, strip_comments=True
        )

    def plain_before(fragment: str) -> str:
        if "<" not in fragment and "&" not in fragment:
            return fragment
        return html.unescape(nh3.clean(fragment, tags=set(), attributes={}))

    tricky = ["&am<i>p;</i>", "<i>&l</i>t;", "<i>a</b></i>", "<b><i>a</b></i>", "\ufeff<i>a</i>"]
    for fragment in tricky:
        assert sanitize(fragment) == sanitize_before(fragment), repr(fragment)
        assert plain_text(fragment) == plain_before(fragment), repr(fragment)
    rng = random.Random(11)
    fast = 0
    for _ in range(8_000):
        fragment = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.5:  # well-formed ones too, so the fast path runs often
            for _ in range(rng.randint(1, 3)):
                tag = rng.choice(("i", "b", "sub", "sup"))
                escaped = html.escape(fragment, quote=False).replace("\r", "").replace("\x00", "")
                fragment = f"x<{tag}>{escaped.replace(chr(0xA0), ' ')}</{tag}>{rng.choice(_PIECES)}"
        fast += is_sanitized(fragment)
        assert sanitize(fragment) == sanitize_before(fragment), repr(fragment)
        assert plain_text(fragment) == plain_before(fragment), repr(fragment)
        paragraphs = re.split(r"\n\s*\n", fragment.strip())
        collapsed = "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
        assert collapse(fragment) == collapsed, repr(fragment)
    assert fast > 2_000  # the comparison covered the fast path, not only nh3


@pytest.mark.parametrize(
    ("tex", "shown"),
    [
        ("a lesion of $\\sim 5$ mm", "a lesion of ~ 5 mm"),
        ("$\\sim$10% of scans", "~10% of scans"),
        ("AUC rose by $\\frac{1}{2}$ point", "AUC rose by 1/2 point"),
        ("$\\dfrac{a+b}{2}$ and $\\tfrac12$", "(a+b)/2 and 1/2"),
        ("$\\frac{\\pi}{2}$", "π/2"),
        ("$\\left(x\\right)$", "(x)"),
        ("$\\mathcal{O}(n\\log n)$", "O(n log n)"),
        ("$\\hat{y}$ and $\\bar{x}$", "ŷ and x̄"),
        ("$p \\lt 0.05$", "p &lt; 0.05"),
        ("Code: \\url{https://github.com/a/b}.", "Code: https://github.com/a/b."),
        ("see \\href{https://a.org}{our site}", "see our site"),
        ("Ko\\l{}odziej and \\o ystein, Stra\\ss{}e", "Kołodziej and øystein, Straße"),
        ("and so on\\dots", "and so on…"),
        ("$\\alpha$~and $\\beta$", "α and β"),
    ],
)
def test_tex_that_read_as_letters_or_vanished(tex: str, shown: str) -> None:
    """\\sim became a blank (TeX's "~" space), \\frac{1}{2} read "frac12", \\url stayed raw."""
    assert clean_tex(clean_plain(tex)) == shown


def test_reading_text_keeps_a_superscript_raised() -> None:
    assert reading_text("n = 10<sup>5</sup>; 10<sup>&minus;3</sup> Gy; 4 m<sup>2</sup>") == (
        "n = 10⁵; 10⁻³ Gy; 4 m²"
    )
    # letters without a raised form keep a caret; subscripts join their word, as in search
    assert reading_text("Smith<sup>a,b</sup> and VO<sub>2</sub>max") == "Smith^a,b and VO2max"
    assert reading_text("x<sup>two words</sup> p &lt; 0.05") == "x^(two words) p < 0.05"
    assert plain_text("10<sup>5</sup>") == "105"  # search and matching still see the digits
