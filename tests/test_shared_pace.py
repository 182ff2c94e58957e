"""The rate and caps shared by every worker, kept in the database (on both backends).

Two `SharedPace` objects on one database stand for two workers (processes,
machines): the slots they are granted never overlap, are one interval apart
across both, hold no 1-second window above the rate (+1 at the edge), give no
burst after an idle gap, and count toward one hourly cap.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from newsletter.core.clock import FakeClock
from newsletter.core.store import Store
from newsletter.send.pacing import SharedLimiter, SharedPace

RATE = 20.0
START = 1_750_000_000.0  # an epoch second


def pace(store: Store, *, hourly_cap: int = 0) -> SharedPace:
    return SharedPace(store, rate=RATE, hourly_cap=hourly_cap, daily_cap=0, block_seconds=0.25)


def slots_of(store: Store, taker: SharedPace, now: float) -> list[float]:
    grant = taker.take(now)
    return [grant.start + i * taker.interval for i in range(grant.count)]


def max_in_window(times: list[float], span: float = 1.0) -> int:
    best, start = 0, 0
    for end in range(len(times)):
        while times[end] - times[start] >= span - 1e-6:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_two_workers_share_one_evenly_spaced_rate(any_store: Store) -> None:
    a, b = pace(any_store), pace(any_store)
    granted: list[float] = []
    now = START
    for taker in itertools.islice(itertools.cycle([a, b, b, a]), 40):
        granted += slots_of(any_store, taker, now)
        now += 0.05  # each asks long before its block is used up
    assert len(granted) == len(set(granted))  # never the same slot twice
    ordered = sorted(granted)
    assert ordered == granted  # handed out in time order, whoever asked
    gaps = [y - x for x, y in itertools.pairwise(ordered)]
    assert gaps == pytest.approx([1 / RATE] * len(gaps), abs=1e-6)  # epoch seconds in a double
    assert max_in_window(ordered) <= RATE + 1


def test_after_an_idle_gap_the_next_slot_is_now_not_a_burst(any_store: Store) -> None:
    a, b = pace(any_store), pace(any_store)
    first = slots_of(any_store, a, START)
    later = START + 600.0  # ten minutes of nothing
    second = slots_of(any_store, b, later) + slots_of(any_store, a, later)
    assert second[0] == later  # not back-dated to fill the idle time
    times = first + second
    assert min(y - x for x, y in itertools.pairwise(times)) >= 1 / RATE - 1e-6
    assert max_in_window(times) <= RATE + 1


def test_an_hourly_cap_holds_across_workers(any_store: Store) -> None:
    a, b = pace(any_store, hourly_cap=12), pace(any_store, hourly_cap=12)
    got = slots_of(any_store, a, START) + slots_of(any_store, b, START + 0.3)
    assert len(got) == 10  # a block of 5 each
    got += slots_of(any_store, a, START + 0.6)
    assert len(got) == 12  # what the cap leaves: 2
    refused = b.take(START + 1.0)
    assert refused.count == 0 and refused.wait_reason == "hourly"
    assert refused.start == pytest.approx(int(START) + 3600 + 1)  # the oldest second leaves
    assert slots_of(any_store, b, refused.start)  # and then it goes on


def test_a_worker_waits_for_its_slots_on_the_clock(any_store: Store) -> None:
    clock = FakeClock()
    limiter = SharedLimiter(pace(any_store), clock=clock, wrap_errors=lambda exc: exc)

    async def take(n: int) -> list[float]:
        return [await limiter.acquire() for _ in range(n)]

    async def run() -> tuple[list[float], list[float]]:
        first = await take(12)
        clock.sleep(30.0)  # idle
        second = await take(12)
        await limiter.close()
        return first, second

    first, second = asyncio.run(run())
    start = clock.start.timestamp()
    assert first == pytest.approx([start + i / RATE for i in range(12)])
    times = first + second
    assert min(y - x for x, y in itertools.pairwise(times)) >= 1 / RATE - 1e-6
    assert max_in_window(times) <= RATE + 1
