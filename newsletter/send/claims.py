"""A worker's hold on ledger rows: batch claims, leases kept by a heartbeat, outcomes in bulk.

Several workers (processes, on one machine or several) may send one issue from
one PostgreSQL database. Each claims rows with one ``UPDATE ... RETURNING``
whose row choice is ``FOR UPDATE SKIP LOCKED`` (on SQLite, where one worker
runs, the write lock taken at BEGIN does the same), so two workers never
claim the same row. A claimed row carries the worker's id and a lease that the
worker's heartbeat renews; a row whose lease ran out (its worker was killed,
or its machine lost) is claimed again by another worker, with the same
Message-ID. On this machine a dead worker's rows are taken back at once.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.types import Integer

from newsletter.core.models import (
    DeliveryStatus,
    SendWorker,
    Subscriber,
    SubscriberStatus,
    table,
)
from newsletter.core.store import Store
from newsletter.send.ledger import D, Outcome, Row, S, as_utc
from newsletter.send.message import Reader

W = table(SendWorker)
_ = Subscriber  # S is the subscribers table


def new_worker_id() -> str:
    """host:pid:random, unique across machines and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # a zombie is dead, just not yet reaped
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def dead_here(worker_id: str) -> bool:
    """A worker of this machine whose process is gone (a remote one waits for its lease)."""
    host, _, rest = worker_id.partition(":")
    pid = rest.partition(":")[0]
    return host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))


@dataclass(frozen=True)
class OpenRows:
    """What is left of a send besides this worker's own rows."""

    due: bool  # rows to claim now
    next_retry_at: datetime | None  # the earliest deferred row
    held_elsewhere: int  # rows other workers are sending
    lease_ends: datetime | None  # when the first of those leases runs out


@dataclass(frozen=True)
class LiveWorker:
    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    sent: int
    rate: float


class Claims:
    """The ledger as one worker writes it."""

    def __init__(
        self, store: Store, issue_id: str, *, worker_id: str, lease_seconds: float
    ) -> None:
        self.issue_id = issue_id
        self.worker_id = worker_id
        self.lease = timedelta(seconds=lease_seconds)
        self._engine = store.engine
        self._writer = store.engine.execution_options(slice_write=True)
        self._skip_locked = store.engine.dialect.name == "postgresql"
        self._after = 0  # the last pending row this worker claimed: the next claim starts past it

    def _due(self, now: datetime) -> Any:
        return or_(
            D.c.status == DeliveryStatus.PENDING,
            and_(D.c.status == DeliveryStatus.DEFERRED, D.c.next_attempt_at <= now),
            and_(D.c.status == DeliveryStatus.SENDING, D.c.lease_until < now),
        )

    def _pick(self, conn: Any, limit: int, now: datetime) -> list[int]:
        """Ids of up to ``limit`` due rows, locked for this transaction (others skip them).

        Retries first (deferred rows now due, rows whose lease ran out: few, and older
        than the pending ones), then pending rows in id order from just past this
        worker's last claim, then any pending rows left behind it (rows handed back
        untried). One query over all three states read and sorted every due row of the
        issue for each claim; from the last claim on, PostgreSQL walks the index from
        there and stops at ``limit``.
        """
        retry = or_(
            and_(D.c.status == DeliveryStatus.DEFERRED, D.c.next_attempt_at <= now),
            and_(D.c.status == DeliveryStatus.SENDING, D.c.lease_until < now),
        )
        pending = D.c.status == DeliveryStatus.PENDING
        rounds = [retry, and_(pending, D.c.id > self._after)]
        if self._after:
            rounds.append(and_(pending, D.c.id <= self._after))
        ids: list[int] = []
        for due in rounds:
            pick = (
                select(D.c.id)
                .where(D.c.issue_id == self.issue_id, due)
                .order_by(D.c.id)
                .limit(limit - len(ids))
            )
            if self._skip_locked:
                pick = pick.with_for_update(skip_locked=True)
            found = [int(i) for (i,) in conn.execute(pick)]
            if due is not retry and found:
                self._after = max(self._after, found[-1])
            ids += found
            if len(ids) >= limit:
                break
        return ids

    # --- the worker registry -------------------------------------------

    def register(self, now: datetime) -> None:
        host, _, rest = self.worker_id.partition(":")
        with self._writer.begin() as conn:
            conn.execute(
                insert(W).values(
                    id=self.worker_id,
                    issue_id=self.issue_id,
                    host=host,
                    pid=int(rest.partition(":")[0]),
                    started_at=now,
                    heartbeat_at=now,
                    sent=0,
                    rate=0.0,
                )
            )

    def unregister(self) -> None:
        with self._writer.begin() as conn:
            conn.execute(delete(W).where(W.c.id == self.worker_id))

    def heartbeat(self, now: datetime, *, sent: int, rate: float, renew: bool = True) -> None:
        """Say this worker lives (its count and rate); with ``renew``, renew its leases too."""
        with self._writer.begin() as conn:
            conn.execute(
                update(W)
                .where(W.c.id == self.worker_id)
                .values(heartbeat_at=now, sent=sent, rate=rate)
            )
            if renew:
                conn.execute(
                    update(D)
                    .where(
                        D.c.issue_id == self.issue_id,
                        D.c.worker_id == self.worker_id,
                        D.c.status == DeliveryStatus.SENDING,
                    )
                    .values(lease_until=now + self.lease)
                )

    # --- claims and outcomes ---------------------------------------------

    def claim(self, limit: int, *, now: datetime) -> tuple[list[Row], list[Row]]:
        """Take up to ``limit`` due rows, oldest first (committed); returns (claimed, skipped).

        A row whose reader is no longer confirmed (unsubscribed, bounced since the
        snapshot) is marked 'skipped' instead of being sent.
        """
        with self._writer.begin() as conn:
            ids = self._pick(conn, limit, now)
            if not ids:
                return [], []
            taken = conn.execute(
                update(D)
                .where(D.c.id.in_(ids))
                .values(
                    status=DeliveryStatus.SENDING.value,
                    attempts=D.c.attempts + 1,
                    worker_id=self.worker_id,
                    lease_until=now + self.lease,
                    updated_at=now,
                )
                .returning(D.c.id, D.c.subscriber_id, D.c.attempts)
            ).all()
            if not taken:
                return [], []
            readers = {
                r.id: r
                for r in conn.execute(
                    select(S.c.id, S.c.uid, S.c.email, S.c.name, S.c.status).where(
                        S.c.id.in_({t.subscriber_id for t in taken})
                    )
                )
            }
            claimed: list[Row] = []
            skipped: list[tuple[Row, str]] = []
            for t in sorted(taken, key=lambda t: int(t.id)):
                r = readers[t.subscriber_id]
                # attempts counts this claim; Row.attempts is the tries before it
                row = Row(
                    t.id, t.subscriber_id, t.attempts - 1, Reader(r.uid, r.email, r.name or "")
                )
                if r.status == SubscriberStatus.CONFIRMED:
                    claimed.append(row)
                else:
                    skipped.append((row, str(r.status)))
            if skipped:
                conn.execute(
                    update(D)
                    .where(D.c.id == bindparam("b_id"))
                    .values(
                        status=DeliveryStatus.SKIPPED.value,
                        attempts=D.c.attempts - 1,
                        last_error=bindparam("b_error"),
                        worker_id="",
                        lease_until=None,
                        updated_at=now,
                    ),
                    [
                        {"b_id": row.delivery_id, "b_error": f"reader {status} before their turn"}
                        for row, status in skipped
                    ],
                )
        return claimed, [row for row, _ in skipped]

    def record(self, outcomes: Sequence[Outcome], *, now: datetime) -> None:
        """Commit what happened to claimed rows (one transaction, one executemany per table)."""
        if not outcomes:
            return
        params: list[dict[str, Any]] = []
        for o in outcomes:
            params.append(
                {
                    "b_id": o.delivery_id,
                    "b_status": o.status.value,
                    "b_code": o.code,
                    "b_error": o.error[:1000],
                    "b_next": o.next_attempt_at,
                    "b_sent": now if o.status == DeliveryStatus.SENT else None,
                    "b_back": 1 if o.status == DeliveryStatus.PENDING else 0,
                    "b_mid": o.message_id,
                }
            )
        suppress = [
            {"b_sid": o.subscriber_id, "b_reason": f"bounced: {o.code} {o.error}"[:500]}
            for o in outcomes
            if o.suppress
        ]
        with self._writer.begin() as conn:
            conn.execute(
                update(D)
                .where(
                    D.c.id == bindparam("b_id"),
                    D.c.status == DeliveryStatus.SENDING,
                    # a row another worker took over (this one's lease ran out) is theirs now
                    D.c.worker_id == self.worker_id,
                )
                .values(
                    status=bindparam("b_status"),
                    last_code=bindparam("b_code"),
                    last_error=bindparam("b_error"),
                    next_attempt_at=bindparam("b_next"),
                    sent_at=bindparam("b_sent"),
                    attempts=D.c.attempts - bindparam("b_back", type_=Integer),
                    message_id=bindparam("b_mid"),
                    worker_id="",
                    lease_until=None,
                    updated_at=now,
                ),
                params,
            )
            if suppress:
                conn.execute(
                    update(S)
                    .where(
                        S.c.id == bindparam("b_sid"),
                        # not IN (...): an expanding list cannot be part of an executemany
                        or_(
                            S.c.status == SubscriberStatus.CONFIRMED.value,
                            S.c.status == SubscriberStatus.PENDING.value,
                        ),
                    )
                    .values(
                        status=SubscriberStatus.BOUNCED.value,
                        status_reason=bindparam("b_reason"),
                        updated_at=now,
                    ),
                    suppress,
                )

    # --- what is left ------------------------------------------------------

    def release_dead(self, now: datetime, *, everyone: bool = False) -> int:
        """Rows held by workers that are gone go back to pending; how many.

        A worker of this machine whose process has ended is gone at once; one on
        another machine when its lease runs out (or ``everyone``: no other worker
        can be running, as with SQLite's single worker).
        """
        with self._writer.begin() as conn:
            holders = [
                str(w)
                for (w,) in conn.execute(
                    select(D.c.worker_id)
                    .where(D.c.issue_id == self.issue_id, D.c.status == DeliveryStatus.SENDING)
                    .group_by(D.c.worker_id)
                )
            ]
            gone = [
                w for w in holders if w != self.worker_id and (everyone or not w or dead_here(w))
            ]
            held = D.c.issue_id == self.issue_id, D.c.status == DeliveryStatus.SENDING
            count = conn.execute(
                update(D)
                .where(
                    *held,
                    or_(D.c.worker_id.in_(gone), D.c.lease_until < now, D.c.lease_until.is_(None))
                    if gone
                    else or_(D.c.lease_until < now, D.c.lease_until.is_(None)),
                )
                .values(
                    status=DeliveryStatus.PENDING.value,
                    worker_id="",
                    lease_until=None,
                    updated_at=now,
                )
            ).rowcount
            if gone:
                conn.execute(delete(W).where(W.c.id.in_(gone)))
            return int(count)

    def open_rows(self, now: datetime) -> OpenRows:
        with self._engine.connect() as conn:
            due = conn.execute(
                select(D.c.id).where(D.c.issue_id == self.issue_id, self._due(now)).limit(1)
            ).first()
            retry = conn.execute(
                select(func.min(D.c.next_attempt_at)).where(
                    D.c.issue_id == self.issue_id, D.c.status == DeliveryStatus.DEFERRED
                )
            ).scalar_one()
            held, lease_ends = conn.execute(
                select(func.count(), func.min(D.c.lease_until)).where(
                    D.c.issue_id == self.issue_id,
                    D.c.status == DeliveryStatus.SENDING,
                    D.c.worker_id != self.worker_id,
                )
            ).one()
        return OpenRows(due is not None, as_utc(retry), int(held), as_utc(lease_ends))


def live_workers(
    store: Store, issue_id: str, *, now: datetime, lease_seconds: float
) -> list[LiveWorker]:
    """Workers of an issue whose last heartbeat is younger than a lease."""
    since = now - timedelta(seconds=lease_seconds)
    with store.read() as session:
        rows = session.connection().execute(
            select(W)
            .where(W.c.issue_id == issue_id, W.c.heartbeat_at >= since)
            .order_by(W.c.started_at)
        )
        return [
            LiveWorker(
                r.id,
                r.host,
                r.pid,
                as_utc(r.started_at) or now,
                as_utc(r.heartbeat_at) or now,
                r.sent,
                r.rate,
            )
            for r in rows
        ]
