"""The MJML pipeline: what the lint refuses, and what survives compiling and inlining."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from mjml import mjml2html

from newsletter.core.errors import MjmlError, TemplateError
from newsletter.issue.htmlmail import _inline_body, lint_mjml, render_mjml
from tests.support.httpserver import ReplayServer

PAGE = """<mjml lang="en">
  <mj-head>
    <mj-title>Weekly</mj-title>
    <mj-preview>This week in imaging</mj-preview>
    <mj-attributes><mj-all font-family="Helvetica, Arial, sans-serif" /></mj-attributes>
    <mj-style inline="inline">.card a { color: #0b5394; text-decoration: none; }</mj-style>
    <mj-style>@media (prefers-color-scheme: dark) { .card { background: #111 !important; } }</mj-style>
  </mj-head>
  <mj-body width="600px">
    <mj-section>
      <mj-column>
        <mj-text css-class="card" padding="10px 25px" color="#333333"><a href="https://example.org/p/1">A paper</a></mj-text>
        <mj-text>Hi __SLICE_FIRST_NAME__ <a href="__SLICE_UNSUBSCRIBE_URL__">Unsubscribe</a></mj-text>
      </mj-column>
      <mj-column>
        <mj-text>Second column</mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
"""


def problems(source: str) -> list[str]:
    return [str(p) for p in lint_mjml(source)]


def test_a_clean_page_lints_clean() -> None:
    assert problems(PAGE) == []


def test_doctype_media_queries_and_outlook_comments_survive() -> None:
    out = render_mjml(PAGE)
    assert out.startswith("<!doctype html>")  # lowercase, as MJML writes it
    # the two-column layout collapses on phones only through these !important rules
    assert "@media only screen and (min-width:480px)" in out
    assert ".mj-column-per-50 { width:50% !important; max-width:50%; }" in out
    assert "background: #111 !important" in out
    assert "<!--[if mso | IE]>" in out and "<![endif]-->" in out
    assert "<!--[if mso]>" in out and "<o:OfficeDocumentSettings>" in out
    assert "<!--[if !mso]><!-->" in out


def test_inline_css_is_inlined_and_kept_in_head() -> None:
    out = render_mjml(PAGE)
    assert 'href="https://example.org/p/1" style="color:#0b5394; text-decoration:none"' in out
    assert ".card a { color: #0b5394; text-decoration: none; }" in out  # clients reading <style>


def test_no_web_fonts() -> None:
    out = render_mjml(PAGE)
    assert "fonts.googleapis" not in out and "<link" not in out and "@import" not in out


def test_placeholders_stay_whole() -> None:
    out = render_mjml(PAGE)
    assert 'href="__SLICE_UNSUBSCRIBE_URL__"' in out
    assert "Hi __SLICE_FIRST_NAME__" in out


def test_inlining_does_not_blow_up_the_size() -> None:
    compiled = mjml2html(PAGE, fonts={})
    out = render_mjml(PAGE)
    assert len(out) < len(compiled) * 1.05


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise AssertionError(f"network touched: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield attempts


def test_the_whole_pipeline_touches_no_network(no_network: list[Any]) -> None:
    render_mjml(PAGE)
    assert no_network == []


def test_inliner_does_not_fetch_a_linked_stylesheet() -> None:
    # Even if a stylesheet link got past the lint, the inliner must not fetch it.
    server = ReplayServer().start()
    try:
        server.add("/evil.css", "a { color: red }", content_type="text/css")
        page = (
            "<!doctype html><html><head></head><body>"
            f'<link rel="stylesheet" href="{server.url}/evil.css"><a href="https://x.org">x</a>'
            "</body></html>"
        )
        out = _inline_body(page, "a { font-weight: bold }")
    finally:
        server.stop()
    assert server.requests == []
    assert 'style="font-weight:bold"' in out


def test_lint_errors_name_their_line() -> None:
    bad = PAGE.replace("<mj-text>Second column</mj-text>", "<mj-txt>Second column</mj-txt>")
    assert problems(bad) == [
        "line 16: unknown tag <mj-txt> (mjml-python would copy it into the email as is)"
    ]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("<mj-text>Hello {{ name }}</mj-text>", "leftover template syntax '{{'"),
        ("<mj-text>{% if x %}</mj-text>", "leftover template syntax '{%'"),
        ('<mj-button href="javascript:alert(1)">x</mj-button>', "the javascript: scheme"),
        ('<mj-text><a href="java&#x09;script:alert(1)">x</a></mj-text>', "the javascript: scheme"),
        ('<mj-text><a href=" JaVaScRiPt:alert(1)">x</a></mj-text>', "the javascript: scheme"),
        ('<mj-text><a href="data:text/html,hi">x</a></mj-text>', "the data: scheme"),
        ('<mj-text><a href="/issues/1">x</a></mj-text>', "is not an absolute URL"),
        ('<mj-text color="#33">x</mj-text>', "'#33' is not a colour"),
        ('<mj-text color="bleu">x</mj-text>', "'bleu' is not a colour"),
        ('<mj-text padding="10px 25">x</mj-text>', "is not 1 to 4 sizes"),
        ('<mj-text font-size="big">x</mj-text>', "'big' is not a size"),
        (
            '<mj-text align="middle">x</mj-text>',
            "'middle' is not one of center, justify, left, right",
        ),
        ('<mj-text><img src="https://x.org/a.png"></mj-text>', "<img> needs an alt text"),
        ('<mj-image src="https://x.org/a.png" />', "<mj-image> needs an alt text"),
        ("<mj-text><script>alert(1)</script></mj-text>", "<script> is not allowed"),
        ('<mj-text><b onclick="x()">x</b></mj-text>', "event-handler attributes"),
        ("<mj-text>x</mj-column>", "</mj-column> found where </mj-text>"),
    ],
)
def test_lint_refuses(snippet: str, expected: str) -> None:
    bad = PAGE.replace("<mj-text>Second column</mj-text>", snippet)
    found = problems(bad)
    assert any(expected in p and p.startswith("line 16:") for p in found), found
    with pytest.raises(MjmlError) as caught:
        render_mjml(bad)
    assert isinstance(caught.value, TemplateError)
    assert "line 16" in str(caught.value)


def test_lint_refuses_external_css_and_fonts() -> None:
    bad = PAGE.replace(
        "<mj-title>Weekly</mj-title>",
        '<mj-font name="Roboto" href="https://fonts.googleapis.com/css?family=Roboto" />'
        "<mj-style>@import url(https://example.org/x.css);</mj-style>",
    )
    found = problems(bad)
    assert any("<mj-font> loads a web font" in p for p in found)
    assert any("CSS may not import or load anything" in p for p in found)


def test_lint_needs_lang() -> None:
    assert "needs a lang attribute" in problems(PAGE.replace(' lang="en"', ""))[0]


def test_comments_are_not_linted_but_keep_line_numbers() -> None:
    source = PAGE.replace("<mj-body", "<!-- {{ old }}\n <mj-foo> -->\n<mj-body")
    assert problems(source) == []
    bad = source.replace("<mj-text>Second column</mj-text>", "<mj-txt>x</mj-txt>")
    assert problems(bad)[0].startswith("line 18:")


def test_mjml_that_does_not_parse_is_an_error() -> None:
    with pytest.raises(MjmlError, match="is never closed"):
        render_mjml('<mjml lang="en"><mj-body><mj-section>')
