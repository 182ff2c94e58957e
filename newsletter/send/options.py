"""How a send behaves (`SendOptions`), what it reports while it runs (`SendEvents`), what it did (`RunTally`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from newsletter.core.settings import Settings
from newsletter.send.deliver import Answer
from newsletter.send.ledger import Outcome, Row


class SendEvents(Protocol):
    """What a send reports while it runs (the CLI draws a progress bar from it)."""

    def begin(self, *, total: int, done: int) -> None: ...

    def outcome(self, row: Row, outcome: Outcome, answer: Answer | None) -> None: ...

    def skipped(self, rows: list[Row]) -> None: ...

    def waiting(self, reason: str, until: datetime | None) -> None: ...


class NoEvents:
    def begin(self, *, total: int, done: int) -> None:
        pass

    def outcome(self, row: Row, outcome: Outcome, answer: Answer | None) -> None:
        pass

    def skipped(self, rows: list[Row]) -> None:
        pass

    def waiting(self, reason: str, until: datetime | None) -> None:
        pass


@dataclass(frozen=True)
class SendOptions:
    """How a send behaves: from settings.send, with the command's flags on top."""

    rate: float = 10.0
    hourly_cap: int = 0
    daily_cap: int = 0
    concurrency: int = 4
    max_attempts: int = 5
    retry_base_seconds: float = 30.0
    reconnect_base_seconds: float = 0.5
    stop_after_relay_failures: int = 0  # 0: max(5, 2 x concurrency)
    lease_seconds: float = 60.0
    commit_seconds: float = 0.2  # outcomes wait at most this long for their commit...
    commit_rows: int = 500  # ...or until this many have gathered
    claim_rows: int = 0  # rows per claim; 0: two seconds' worth at the rate, 16-500
    sign_threads: int = 2

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SendOptions:
        s = settings.send
        values: dict[str, Any] = {
            "rate": s.rate,
            "hourly_cap": s.hourly_cap,
            "daily_cap": s.daily_cap,
            "concurrency": s.concurrency,
            "max_attempts": s.max_attempts,
            "retry_base_seconds": s.retry_base_seconds,
            "lease_seconds": s.lease_seconds,
            "commit_seconds": s.commit_seconds,
            "commit_rows": s.commit_rows,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def relay_failure_limit(self) -> int:
        return self.stop_after_relay_failures or max(5, 2 * self.concurrency)

    @property
    def claim_size(self) -> int:
        if self.claim_rows:
            return self.claim_rows
        wanted = int(self.rate * 2) if self.rate > 0 else 500
        return max(4 * self.concurrency, 16, min(500, wanted))


@dataclass
class RunTally:
    """What this run did (the ledger holds the totals)."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: int = 0
    skipped: int = 0
    stopped: str = ""
    connections: int = 0
    failures: list[tuple[str, Answer]] = field(default_factory=list)
