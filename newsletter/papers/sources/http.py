"""The polite HTTP client every source uses.

Wraps an injected `httpx.Client` with what the public APIs ask of a good
citizen: a User-Agent naming Slice and its version (and a contact address),
per-host spacing of requests, and retries with exponential backoff on 429,
5xx and connection errors, honouring ``Retry-After``. Time is read and slept
through an injectable `Clock`, so tests check the spacing without waiting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from newsletter import __version__
from newsletter.core.clock import Clock, Spacing, SystemClock
from newsletter.core.errors import SourceHTTPError, SourceTimeout

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 300.0
MAX_BACKOFF = 60.0


def user_agent(contact: str = "") -> str:
    base = f"Slice/{__version__} (research-paper newsletter; +https://github.com/slice-newsletter/slice"
    return f"{base}; mailto:{contact})" if contact else f"{base})"


@dataclass
class HostSpacing:
    """At most one request per ``interval`` seconds for each host (`Spacing` per host)."""

    clock: Clock
    _hosts: dict[str, Spacing] = field(default_factory=dict)

    def set_interval(self, host: str, seconds: float) -> None:
        spacing = self._hosts.setdefault(host, Spacing(seconds))
        spacing.interval = max(seconds, spacing.interval)

    def wait(self, host: str) -> None:
        spacing = self._hosts.setdefault(host, Spacing(0.0))
        now = self.clock.monotonic()
        slot = spacing.slot(now)
        if slot > now:
            self.clock.sleep(slot - now)
        spacing.take(slot)


@dataclass
class RequestLog:
    """When each request was sent, on the injected clock (what tests assert on)."""

    entries: list[tuple[float, str]] = field(default_factory=list)


class PoliteClient:
    """GET with rate limits, retries and clear errors. One per `slice fetch` run."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        clock: Clock | None = None,
        retries: int = 4,
        backoff: float = 1.0,
        timeout: float = 30.0,
        contact: str = "",
    ) -> None:
        self.client = client
        self.clock: Clock = clock or SystemClock()
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.limiter = HostSpacing(self.clock)
        self.log = RequestLog()
        self.headers = {"User-Agent": user_agent(contact)}

    def limit(
        self, url: str, *, per_second: float | None = None, interval: float | None = None
    ) -> None:
        """Space requests to ``url``'s host: ``per_second`` or one every ``interval`` seconds."""
        host = urlsplit(url).netloc
        seconds = interval if interval is not None else (1.0 / per_second if per_second else 0.0)
        self.limiter.set_interval(host, seconds)

    def get(
        self, url: str, *, params: Mapping[str, str | int] | None = None, what: str = ""
    ) -> httpx.Response:
        """The response to a GET, after retries; raises SourceHTTPError / SourceTimeout."""
        host = urlsplit(url).netloc
        label = what or host
        attempt = 0
        while True:
            self.limiter.wait(host)
            self.log.entries.append((self.clock.monotonic(), url))
            try:
                response = self.client.get(
                    url,
                    params=params,
                    headers=self.headers,
                    timeout=self.timeout,
                    follow_redirects=True,
                )
            except httpx.TimeoutException as exc:
                if attempt >= self.retries:
                    raise SourceTimeout(
                        f"{label}: no answer from {host} within {self.timeout:g}s "
                        f"after {attempt + 1} tries; try again later or raise [fetch] timeout."
                    ) from exc
                self._pause(attempt, None)
                attempt += 1
                continue
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise SourceHTTPError(
                        f"{label}: cannot reach {host} ({exc.__class__.__name__}: {exc}) "
                        f"after {attempt + 1} tries; check the network or the source's base_url."
                    ) from exc
                self._pause(attempt, None)
                attempt += 1
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                wait = retry_after(response.headers.get("Retry-After"))
                if wait is not None and wait > MAX_RETRY_AFTER:
                    raise SourceHTTPError(
                        f"{label}: {host} asks to wait {wait:.0f}s (HTTP {response.status_code}); try again later."
                    )
                self._pause(attempt, wait)
                attempt += 1
                continue
            if response.status_code >= 400:
                advice = (
                    "the service is busy or down; try again later"
                    if response.status_code in RETRY_STATUSES
                    else "check the source's options (query, base_url)"
                )
                raise SourceHTTPError(
                    f"{label}: {host} answered HTTP {response.status_code} "
                    f"{response.reason_phrase or ''}".rstrip()
                    + (f" after {attempt + 1} tries" if attempt else "")
                    + f"; {advice}."
                )
            return response

    def _pause(self, attempt: int, retry_after_s: float | None) -> None:
        delay = (
            retry_after_s
            if retry_after_s is not None
            else min(self.backoff * (2**attempt), MAX_BACKOFF)
        )
        self.clock.sleep(delay)


def retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
