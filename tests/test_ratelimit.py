"""The global rate limiter: exact spacing and caps on a fake clock, and once on the real clock."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from datetime import timedelta
from pathlib import Path

import pytest

from newsletter.core.clock import FakeClock
from newsletter.core.config import load_settings
from newsletter.core.store import Store
from newsletter.send.ratelimit import RateLimiter
from newsletter.send.service import SendOptions, send_issue
from tests.send_support import ISSUE, add_readers, write_issue
from tests.support.smtpd import RecordingSMTPServer


def grant_times(limiter: RateLimiter, count: int, workers: int = 1) -> list[float]:
    """Acquire ``count`` tokens from ``workers`` concurrent tasks; the grant times, in order."""
    times: list[float] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            times.append(await limiter.acquire())

    async def main() -> None:
        share = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
        await asyncio.gather(*(worker(n) for n in share))

    asyncio.run(main())
    return times


def max_in_window(times: list[float], span: float) -> int:
    best, start = 0, 0
    for end in range(len(times)):
        while times[end] - times[start] >= span - 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_messages_are_spaced_exactly_at_the_rate_across_connections() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=10, clock=clock)
    times = grant_times(limiter, 50, workers=8)
    assert times == pytest.approx([i * 0.1 for i in range(50)])
    assert max_in_window(times, 1.0) == 10
    assert clock.elapsed == pytest.approx(4.9)


def test_after_an_idle_gap_the_next_two_messages_are_still_an_interval_apart() -> None:
    """Idle (the start, a retry wait, a reconnect), then a burst of work: no two at once."""
    clock = FakeClock()
    limiter = RateLimiter(rate=10, clock=clock)
    first = grant_times(limiter, 3)
    clock.sleep(7.25)  # idle: nothing asked for a slot meanwhile
    after = grant_times(limiter, 25, workers=4)
    assert first == pytest.approx([0.0, 0.1, 0.2])
    assert after == pytest.approx([7.45 + i * 0.1 for i in range(25)])
    times = first + after
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.1 - 1e-9
    assert max_in_window(times, 1.0) == 10


def test_no_limit_means_no_waiting() -> None:
    clock = FakeClock()
    times = grant_times(RateLimiter(rate=0, clock=clock), 1000, workers=4)
    assert set(times) == {0.0} and clock.sleeps == []


def test_a_late_wake_up_does_not_slow_the_long_run_rate() -> None:
    class LateClock(FakeClock):
        async def wait(self, seconds: float) -> None:
            await super().wait(seconds + 0.003)  # every wake-up 3 ms late

    clock = LateClock()
    times = grant_times(RateLimiter(rate=50, clock=clock), 501)
    # 500 intervals at 50/s take 10 s; lateness does not pile up
    assert times[-1] == pytest.approx(10.0, abs=0.01)
    assert max_in_window(times, 1.0) <= 51


def test_hourly_cap_holds_messages_back_until_the_window_slides() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=100, hourly_cap=5, clock=clock)
    waits: list[tuple[str, float]] = []
    limiter.on_wait = lambda reason, seconds: waits.append((reason, seconds))
    times = grant_times(limiter, 12)
    assert times[:5] == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04])
    # the 6th goes when the first second's messages have left the one-hour window
    assert times[5] == pytest.approx(3601.0)
    assert max_in_window(times, 3600.0) == 5
    assert waits and waits[0][0] == "hourly"


def test_daily_cap_counts_what_was_sent_before_this_run() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=0, daily_cap=3, clock=clock)
    earlier = [clock.now() - timedelta(hours=23), clock.now() - timedelta(hours=1)]
    assert limiter.seed(earlier) == 2
    times = grant_times(limiter, 3)
    assert times[0] == 0.0
    # the one from 23 h ago leaves the 24 h window after 1 h; then 22 h later the next
    assert times[1] == pytest.approx(3600.0, abs=1.01)
    assert times[2] == pytest.approx(23 * 3600.0, abs=1.01)


def test_real_clock_at_a_low_rate_through_a_real_send(
    project: Path, smtp_environ: dict[str, str], smtp_server: RecordingSMTPServer
) -> None:
    """Once for real: 20 messages at 20/s over 3 connections take about a second, evenly."""
    settings = load_settings(config=project / "slice.toml", environ=smtp_environ)
    stamps: list[float] = []
    handler = smtp_server.handler
    handler.on_message = lambda item: stamps.append(time.monotonic())
    with Store.open(settings.database_url) as store:
        write_issue(settings, store, papers=2)
        add_readers(store, 21)
        options = SendOptions(rate=20, concurrency=3)
        started = time.monotonic()
        report = asyncio.run(
            send_issue(settings, store, ISSUE, options=options, rng=random.Random(0))
        )
        elapsed = time.monotonic() - started
    assert report.tally.sent == 21
    stamps.sort()
    # The first three messages each open one of the three connections, so their arrival
    # is late by the connect time (large on a busy machine); from the fourth on, arrivals
    # follow the grants, 1/20 s apart: 17 intervals at least (0.85 s), less a little jitter.
    assert 0.8 <= stamps[-1] - stamps[3] <= 2.0, stamps[-1] - stamps[3]
    assert max_in_window(stamps, 0.5) <= 12
    assert elapsed < 5
