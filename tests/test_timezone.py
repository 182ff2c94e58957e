"""One `timezone` setting: the week compose picks, fetch's days and readers' dates are the editor's."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import Result

from newsletter.core.config import load_settings
from newsletter.core.models import Issue, IssueStatus
from newsletter.core.store import Store
from newsletter.core.timezone import local_today, zone
from newsletter.issue.compose import window_from_options
from newsletter.papers.fetch import fetch_window
from newsletter.web import create_app
from tests.support.liveserver import LiveServer

# Monday 1 June 2026, 06:00 in Tokyo (UTC+9), when the README's cron line runs there:
# in UTC it is still Sunday 31 May.
MONDAY_6AM_TOKYO = datetime(2026, 6, 1, 6, 0, tzinfo=ZoneInfo("Asia/Tokyo")).astimezone(UTC)


def test_the_week_is_the_editors_week_east_of_utc() -> None:
    assert MONDAY_6AM_TOKYO.date() == date(2026, 5, 31)
    tokyo = local_today(MONDAY_6AM_TOKYO, zone("Asia/Tokyo"))
    window = window_from_options(week=None, since=None, until=None, today=tokyo)
    assert window.issue_id == "2026-W22"  # 25 to 31 May: the week that just ended in Tokyo
    in_utc = local_today(MONDAY_6AM_TOKYO, zone("UTC"))
    assert window_from_options(week=None, since=None, until=None, today=in_utc).issue_id == (
        "2026-W21"  # what a UTC clock picked: the week before
    )
    # fetch asks for the days up to the editor's today
    assert fetch_window(since=None, until=None, today=tokyo, lookback_days=7).until == date(
        2026, 6, 1
    )


def test_the_setting_comes_from_slice_toml_or_the_environment(
    project: Path, environ: dict[str, str], run_cli: Callable[..., Result]
) -> None:
    config = project / "slice.toml"
    settings = load_settings(config=config, environ={**environ, "SLICE_TIMEZONE": "Asia/Tokyo"})
    assert settings.newsletter.tz == ZoneInfo("Asia/Tokyo")
    default = load_settings(config=config, environ=environ)
    assert default.newsletter.timezone == ""  # the machine's
    assert default.newsletter.tz.utcoffset(datetime(2026, 1, 1)) is not None
    # what a misspelt zone gets: one line naming it, exit 1
    bad = run_cli("papers", env={**environ, "SLICE_TIMEZONE": "Asia/Tokio"})
    assert bad.exit_code == 1
    assert "'Asia/Tokio' is not a time zone" in bad.stderr and bad.stderr.count("\n") == 1


def test_the_archive_shows_the_editors_dates(project: Path, environ: dict[str, str]) -> None:
    settings = load_settings(
        config=project / "slice.toml", environ={**environ, "SLICE_TIMEZONE": "Asia/Tokyo"}
    )
    with Store.open(settings.database_url) as store:
        with store.write() as session:
            session.add(
                Issue(
                    id="2026-W22",
                    number=1,
                    subject="Week 22",
                    window_start=date(2026, 5, 25),
                    window_end=date(2026, 5, 31),
                    status=IssueStatus.SENT.value,
                    sent_at=MONDAY_6AM_TOKYO,  # Sunday in UTC, Monday in Tokyo
                )
            )
        server = LiveServer(create_app(settings, store=store)).start()
        try:
            with urllib.request.urlopen(f"{server.url}/issues") as page:
                html = page.read().decode()
        finally:
            server.stop()
    assert "sent <time" in html and "Jun 1, 2026</time>" in html
    assert "May 31, 2026</time>" not in html


@pytest.mark.parametrize("name", ["Asia/Tokyo", "Pacific/Kiritimati", "America/Los_Angeles"])
def test_zones_east_and_west(name: str) -> None:
    when = datetime(2026, 6, 1, 6, 0, tzinfo=ZoneInfo(name)).astimezone(UTC)
    today = local_today(when, zone(name))
    assert window_from_options(week=None, since=None, until=None, today=today).issue_id == (
        "2026-W22"
    )
