"""The window an issue covers: an ISO week, or the editor's own dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from newsletter.core.weeks import parse_iso_week


@dataclass(frozen=True)
class Window:
    """The days an issue covers, both ends included, and the issue id they give."""

    start: date
    end: date

    @property
    def issue_id(self) -> str:
        year, week, weekday = self.start.isocalendar()
        if weekday == 1 and self.end == self.start + timedelta(days=6):
            return f"{year}-W{week:02d}"
        return f"{self.start.isoformat()}_{self.end.isoformat()}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end

    def __str__(self) -> str:
        if self.issue_id.startswith(f"{self.start.isocalendar()[0]}-W"):
            return f"{self.issue_id} ({self.start.isoformat()} to {self.end.isoformat()})"
        return f"{self.start.isoformat()} to {self.end.isoformat()}"


def week_window(week: str) -> Window:
    """The window of an ISO week written ``YYYY-Www``. Raises ValueError if it is not one."""
    return Window(*parse_iso_week(week))


def last_complete_week(today: date) -> Window:
    """The last ISO week that has ended before ``today``."""
    this_monday = today - timedelta(days=today.weekday())
    start = this_monday - timedelta(days=7)
    return Window(start, start + timedelta(days=6))
