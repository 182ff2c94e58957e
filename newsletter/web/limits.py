"""Signup limits kept in the database, so every `slice serve` worker shares them.

Each accepted signup form counts once against its client and once against its
address, in the last hour (a sliding window), whatever the address's status:
a refusal says nothing about whether an address is subscribed. The check and
the count are one transaction that holds the lock for the keys it counts
(SQLite: the write lock, taken at BEGIN; PostgreSQL: a transaction-level
advisory lock per key), and it is the signup's own transaction, so fifty simultaneous posts cannot all pass a check
made before any of them is counted.

The client is the socket's peer. Forwarded headers are believed only from the
proxies listed in ``web.trusted_proxies``: then the client is the last address
in ``X-Forwarded-For`` that is not itself a trusted proxy. IPv6 clients count
per /64 network, the block one household or server usually holds.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Request
from sqlalchemy import delete, func, text
from sqlmodel import Session, col, select

from newsletter.core.models import SignupHit
from newsletter.readers.subscribers import Subscribers

WINDOW = timedelta(hours=1)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(entries: Sequence[str]) -> tuple[Network, ...]:
    """``web.trusted_proxies`` entries (addresses or CIDR networks) as networks."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _ip(text_value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = text_value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def client_address(request: Request, trusted: Sequence[Network]) -> str | None:
    """The client's address: the peer, or what trusted proxies say the client was."""
    peer = request.client.host if request.client else None
    if peer is None or not trusted:
        return peer
    hop = _ip(peer)
    if hop is None or not any(hop in net for net in trusted):
        return peer
    chain = [
        part for value in request.headers.getlist("x-forwarded-for") for part in value.split(",")
    ]
    for entry in reversed(chain):
        found = _ip(entry)
        if found is None:
            return str(hop)  # a garbled entry: the last trusted hop is all we know
        hop = found
        if not any(hop in net for net in trusted):
            return str(hop)
    return str(hop)


def client_key(address: str | None) -> str:
    """What a client is counted as: its address, or its /64 for IPv6."""
    if address is None:
        return "unknown"
    found = _ip(address)
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{found}/64", strict=False))
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return str(found.ipv4_mapped)
    return address


@dataclass(frozen=True)
class Limit:
    scope: str  # "client" or "address"
    subject: str  # the client key, or the address's key
    per_hour: int  # 0: no limit


def _hashed(scope: str, subject: str) -> str:
    return hashlib.sha256(f"{scope}\0{subject}".encode()).hexdigest()[:32]


class SignupLimits:
    """Atomic check-and-count of signups per client and per address."""

    def __init__(self, subscribers: Subscribers) -> None:
        self.subscribers = subscribers
        self.store = subscribers.store
        self.clock = subscribers.clock

    def take(self, session: Session, limits: Sequence[Limit]) -> str | None:
        """Count one signup against every limit, or none if any is used up.

        Runs in the caller's write transaction (the subscribe's), so the check, the
        count and the signup commit together. Returns the scope of the limit that
        refused, or None when counted.
        """
        active = [(lim, _hashed(lim.scope, lim.subject)) for lim in limits if lim.per_hour]
        if not active:
            return None
        now: datetime = self.clock()
        cutoff = now - WINDOW
        if self.store.engine.dialect.name == "postgresql":
            for key in sorted(key for _, key in active):  # in one order: no deadlock
                session.execute(
                    text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                    {"key": key},
                )
        for lim, key in active:
            used = session.scalar(
                select(func.count())
                .select_from(SignupHit)
                .where(SignupHit.scope == lim.scope)
                .where(SignupHit.key == key)
                .where(col(SignupHit.at) > cutoff)
            )
            if (used or 0) >= lim.per_hour:
                return lim.scope
        for lim, key in active:
            session.add(SignupHit(scope=lim.scope, key=key, at=now))
        session.execute(delete(SignupHit).where(col(SignupHit.at) <= cutoff))
        return None
