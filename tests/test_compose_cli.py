"""`slice compose` as a person types it: what is printed, and the errors they can meet."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from typer.testing import Result

from newsletter.core.config import load_settings
from newsletter.core.store import Store
from tests.composedata import PAPERS, WEEK, add_papers, project_settings


@pytest.fixture
def stored(project: Path, environ: dict[str, str]) -> dict[str, int]:
    settings = project_settings(project, environ)
    with Store.open(settings.database_url) as store:
        return add_papers(store)


def test_compose_prints_the_issue_id_and_a_summary(
    run_cli: Callable[..., Result], project: Path, stored: dict[str, int]
) -> None:
    result = run_cli("compose", "--week", WEEK)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{WEEK}\n"
    assert "Issue #1: 5 papers, email.html" in result.stderr
    assert "Subject: A foundation model for chest radiograph" in result.stderr
    assert f"`slice send {WEEK} --dry-run`" in result.stderr
    assert (project / "outbox" / WEEK / "email.html").is_file()


def test_explain_shows_each_candidate_and_its_terms(
    run_cli: Callable[..., Result], environ: dict[str, str], stored: dict[str, int]
) -> None:
    result = run_cli("compose", "--week", WEEK, "--explain", env={**environ, "COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert '+4.91  "foundation model" in title + abstract' in out
    assert 'profile excludes "veterinary"' in out
    assert "matches no profile term" in out
    assert out.rstrip().endswith(WEEK)


def test_pin_exclude_and_reselect_flags(
    run_cli: Callable[..., Result], project: Path, stored: dict[str, int]
) -> None:
    parking = stored["Hospital parking and patient satisfaction"]
    mammo = stored["Mammography AI as second reader: a prospective multicentre study"]
    assert (
        run_cli("compose", "--week", WEEK, "--pin", str(parking), "--exclude", str(mammo)).exit_code
        == 0
    )
    issue = json.loads((project / "outbox" / WEEK / "issue.json").read_text())
    listed = [p["id"] for p in issue["papers"]]
    assert parking in listed and mammo not in listed
    result = run_cli("compose", "--week", WEEK, "--reselect", "--max", "2")
    assert result.exit_code == 0
    issue = json.loads((project / "outbox" / WEEK / "issue.json").read_text())
    assert len(issue["papers"]) == 2 and issue["pinned"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--week", "2026-W30"], "Error: no papers published or first seen in 2026-W30 (2026-07-20 to 2026-07-26); 7 papers are stored in all."),
        (["--week", "22"], "Error: --week: '22' is not an ISO week; write it like 2025-W24."),
        (["--since", "2026-05-01"], "Error: --since and --until go together"),
        (["--since", "2026-05-10", "--until", "2026-05-01"], "Error: --until 2026-05-01 is before --since 2026-05-10; swap them."),
        (["--since", "May 1", "--until", "2026-05-10"], "Error: --since 'May 1' is not a date; write it like 2025-06-09."),
        (["--week", WEEK, "--since", "2026-05-01", "--until", "2026-05-02"], "Error: use either --week or --since/--until, not both."),
        (["--week", WEEK, "--pin", "9999"], "Error: --pin 9999: no paper with that id is stored"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_1(
    run_cli: Callable[..., Result],
    project: Path,
    stored: dict[str, int],
    args: list[str],
    message: str,
) -> None:
    result = run_cli("compose", *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
    assert list((project / "outbox").iterdir()) == [] or all(
        p.name.startswith(".") for p in (project / "outbox").iterdir()
    )


def test_one_stored_paper_is_counted_in_the_singular(
    run_cli: Callable[..., Result], project: Path, environ: dict[str, str]
) -> None:
    settings = project_settings(project, environ)
    with Store.open(settings.database_url) as store:
        add_papers(store, [{**PAPERS[0], "title": "A lone paper"}])
    result = run_cli("compose", "--week", "2026-W30")
    assert result.exit_code == 1
    assert "; 1 paper is stored in all." in result.stderr


def test_custom_window_gets_its_own_issue(
    run_cli: Callable[..., Result], project: Path, stored: dict[str, int]
) -> None:
    result = run_cli("compose", "--since", "2026-05-26", "--until", "2026-05-28")
    assert result.exit_code == 0, result.output
    assert result.stdout == "2026-05-26_2026-05-28\n"
    message = json.loads(
        (project / "outbox" / "2026-05-26_2026-05-28" / "message.json").read_text()
    )
    assert (message["window_start"], message["window_end"]) == ("2026-05-26", "2026-05-28")


def test_broken_template_is_one_line_with_file_and_line(
    run_cli: Callable[..., Result], project: Path, stored: dict[str, int]
) -> None:
    assert run_cli("compose", "--week", WEEK).exit_code == 0
    before = (project / "outbox" / WEEK / "email.html").read_bytes()
    (project / "templates" / "email").mkdir(parents=True, exist_ok=True)
    (project / "templates" / "email" / "issue.mjml").write_text(
        '<mjml lang="en">\n<mj-body>\n{% if %}\n</mj-body></mjml>\n'
    )
    result = run_cli("compose", "--week", WEEK)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: {project / 'templates' / 'email' / 'issue.mjml'}, line 3: TemplateSyntaxError:"
    )
    assert (project / "outbox" / WEEK / "email.html").read_bytes() == before


def test_open_shows_the_email_in_a_browser(
    run_cli: Callable[..., Result],
    project: Path,
    stored: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[str] = []

    def open_(url: str, *_args: object, **_kw: object) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr("webbrowser.open", open_)
    result = run_cli("compose", "--week", WEEK, "--open")
    assert result.exit_code == 0, result.output
    assert opened == [(project / "outbox" / WEEK / "preview.html").resolve().as_uri()]


def test_the_email_to_review_is_filled_in_for_a_sample_reader(
    run_cli: Callable[..., Result], project: Path, stored: dict[str, int]
) -> None:
    # email.html keeps the per-reader marks a send fills in; the editor is sent to a copy
    # that reads as a reader sees it
    result = run_cli("compose", "--week", WEEK)
    assert result.exit_code == 0, result.output
    preview = project / "outbox" / WEEK / "preview.html"
    assert f"Review {preview}, edit" in " ".join(result.stderr.split())
    html = preview.read_text(encoding="utf-8")
    assert "__SLICE_" not in html
    assert "Good morning, Sam," in html
    assert 'href="https://weekly.example.org/issues/' in html
    assert 'href="#unsubscribe-link-preview"' in html
    assert "__SLICE_GREETING__" in (project / "outbox" / WEEK / "email.html").read_text()


def test_a_rerun_tells_about_papers_fetched_since(
    run_cli: Callable[..., Result], project: Path, environ: dict[str, str], stored: dict[str, int]
) -> None:
    assert run_cli("compose", "--week", WEEK).exit_code == 0
    settings = project_settings(project, environ)
    with Store.open(settings.database_url) as store:
        late = add_papers(store, [{"title": "Deep learning MRI radiology foundation model", "authors": [],
                                   "source": "pubmed", "kind": "paper", "published": date(2026, 5, 29)}])  # fmt: skip
    result = run_cli("compose", "--week", WEEK)
    assert result.exit_code == 0
    new_id = late["Deep learning MRI radiology foundation model"]
    assert (
        f"1 newer candidate is not in issue.json ({new_id}); add one with --pin ID" in result.stderr
    )
    assert run_cli("compose", "--week", WEEK, "--pin", str(new_id)).exit_code == 0
    issue = json.loads((project / "outbox" / WEEK / "issue.json").read_text())
    assert new_id in [p["id"] for p in issue["papers"]]


def test_a_message_near_gmails_clipping_size_is_a_warning(
    run_cli: Callable[..., Result], project: Path, environ: dict[str, str], stored: dict[str, int]
) -> None:
    toml = project / "slice.toml"
    toml.write_text(toml.read_text().replace("max_papers = 6", "max_papers = 60\nabstract_chars = 20000").replace(
        "per_source_cap = 3", "per_source_cap = 60").replace("[profile]", "[profile]\nmin_score = 0"))  # fmt: skip
    with Store.open(load_settings(config=toml, environ=environ).database_url) as store:
        add_papers(store, [{"title": f"Deep learning CT study {i}", "authors": ["A B"], "abstract": "Deep learning CT. " * 150,
                            "source": "pubmed", "kind": "paper", "published": date(2026, 5, 27)} for i in range(40)])  # fmt: skip
    result = run_cli("compose", "--week", WEEK, env={**environ, "COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "Warning: email.html is" in result.stderr
    assert "Gmail clips messages over 102 KB" in result.stderr


def test_default_window_is_the_last_complete_week(
    run_cli: Callable[..., Result], stored: dict[str, int]
) -> None:
    from datetime import UTC, datetime

    from newsletter.issue.window import last_complete_week

    expected = last_complete_week(datetime.now(UTC).date())
    if expected.issue_id == WEEK:
        pytest.skip("the test papers' week is the last complete week today")
    result = run_cli("compose")
    assert result.exit_code == 1  # the stored papers are from 2026-W22
    assert result.stderr.startswith(f"Error: no papers published or first seen in {expected};")


def test_a_profile_that_matches_nothing_is_a_warning(
    run_cli: Callable[..., Result], project: Path, environ: dict[str, str], stored: dict[str, int]
) -> None:
    toml = project / "slice.toml"
    toml.write_text(
        toml.read_text().split("[profile.terms]")[0] + '[profile.terms]\n"ultrasound" = 1.0\n'
    )
    result = run_cli("compose", "--week", WEEK, env={**environ, "COLUMNS": "300"})
    assert result.exit_code == 0
    assert (
        "Warning: the issue lists no papers: none of the 7 candidates was chosen (--explain shows why)"
        in result.stderr
    )


def test_the_id_slice_papers_shows_is_the_one_pin_takes(
    run_cli: Callable[..., Result], project: Path, environ: dict[str, str], stored: dict[str, int]
) -> None:
    """An editor copies an id from `slice papers` into `slice compose --pin`."""
    parking = stored["Hospital parking and patient satisfaction"]
    table = run_cli("papers", env={**environ, "COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if "Hospital parking" in line)
    shown_id = row.strip("│┃ ").split()[0]
    assert shown_id == str(parking)
    assert run_cli("compose", "--week", WEEK, "--pin", shown_id).exit_code == 0
    issue = json.loads((project / "outbox" / WEEK / "issue.json").read_text())
    assert parking in [p["id"] for p in issue["papers"]]
