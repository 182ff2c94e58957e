"""Stopping a long command cleanly, on Ctrl-C and on SIGTERM alike.

A process started in the background by a shell script, or by systemd, may run
with SIGINT ignored; `kill` and `systemctl stop` send SIGTERM. Both signals
must stop `slice send`, `slice dev-smtp` and `slice serve` the way Ctrl-C
does, so SIGTERM is handled on its own here, never by re-raising SIGINT
(which an ignored SIGINT would swallow).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class _Stopped(Exception):
    """The coroutine was cancelled by a signal and has finished cleaning up."""


def _stop_signals() -> list[signal.Signals]:
    """SIGTERM always; SIGINT too, unless whoever started us chose to ignore it."""
    found = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        found.append(signal.SIGINT)
    return found


def run_stoppable(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, where SIGTERM and Ctrl-C cancel ``main`` (its cleanup runs to the end).

    Raises KeyboardInterrupt once ``main`` has finished after such a signal.
    """
    stopped = False

    async def guarded() -> T:
        nonlocal stopped
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def stop() -> None:
            nonlocal stopped
            if not stopped:  # once: a second signal must not cut the cleanup short
                stopped = True
                task.cancel()

        signals = _stop_signals()
        for sig in signals:
            loop.add_signal_handler(sig, stop)
        try:
            return await main
        except asyncio.CancelledError:
            if stopped:
                raise _Stopped from None
            raise
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(guarded())
    except _Stopped:
        raise KeyboardInterrupt from None


@contextlib.contextmanager
def term_as_interrupt() -> Iterator[None]:
    """For a blocking (not asyncio) command: SIGTERM raises KeyboardInterrupt, as Ctrl-C does."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
