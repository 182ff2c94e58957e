"""The subscriber library on SQLite and PostgreSQL: addresses, the opt-in rules, suppression, pruning."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from newsletter.core.errors import (
    InvalidAddressError,
    InvalidNameError,
    SubscriberError,
    SubscriberNotFoundError,
    TokenError,
)
from newsletter.core.models import SubscriberStatus
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.readers.subscribers import (
    AddAction,
    ConfirmStatus,
    ConsentSource,
    SubscribeAction,
    Subscribers,
    clean_name,
    normalize_email,
)
from tests.signup_support import FakeClock, rows


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def subs(settings: Settings, any_store: Store, clock: FakeClock) -> Subscribers:
    return Subscribers(settings, any_store, clock=clock)


# --- addresses and names ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "stored", "shown"),
    [
        ("Bob@Example.ORG", "Bob@example.org", "Bob@example.org"),
        ("  bob@example.org \n", None, None),  # a line break is refused, see below
        ("bob@bücher.de", "bob@xn--bcher-kva.de", "bob@bücher.de"),
        ("BOB@XN--BCHER-KVA.DE", "BOB@xn--bcher-kva.de", "BOB@bücher.de"),
        ("anna@ß.de", "anna@xn--zca.de", "anna@ß.de"),
        (" spaced@example.org ", "spaced@example.org", "spaced@example.org"),
    ],
)
def test_addresses_are_normalized(raw: str, stored: str | None, shown: str | None) -> None:
    if stored is None:
        with pytest.raises(InvalidAddressError, match="line break"):
            normalize_email(raw)
        return
    address = normalize_email(raw)
    assert (address.email, address.key, address.display) == (stored, stored.lower(), shown)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "plain",
        "a@b",
        "a" * 65 + "@example.org",
        "x@" + "d" * 250 + ".org",
        "bøb@example.org",
        '"quoted"@example.org',
        "bob@[192.0.2.1]",
        "bob@example.org\x00",
        "Bob <bob@example.org>",
    ],
)
def test_bad_addresses_raise_one_clear_error(raw: str) -> None:
    with pytest.raises(InvalidAddressError) as info:
        normalize_email(raw)
    assert "\n" not in str(info.value)


def test_names_are_one_line_and_bounded() -> None:
    assert clean_name("  Ann   Marie\tReader ") == "Ann Marie Reader"
    with pytest.raises(InvalidNameError, match="line break"):
        clean_name("Ann\nBcc: x@example.org")
    with pytest.raises(InvalidNameError, match="too long"):
        clean_name("x" * 101)


# --- the opt-in ----------------------------------------------------------------------


def test_a_new_address_is_pending_until_it_confirms(subs: Subscribers, clock: FakeClock) -> None:
    result = subs.subscribe("ann@example.org", name="Ann", source=ConsentSource.WEB)
    assert result.action is SubscribeAction.CREATED and result.confirmation is not None
    assert subs.get("ANN@example.org").status == "pending"  # type: ignore[union-attr]
    confirmed = subs.confirm(result.confirmation.token, ip="192.0.2.9")
    assert confirmed.status is ConfirmStatus.CONFIRMED
    assert confirmed.welcome is not None and confirmed.welcome.name == "Ann"
    sub = subs.require("ann@example.org")
    assert (sub.status, sub.confirm_ip, sub.confirm_nonce) == ("confirmed", "192.0.2.9", None)
    assert subs.confirm(result.confirmation.token).status is ConfirmStatus.ALREADY_CONFIRMED


def test_resend_interval_and_link_rotation(subs: Subscribers, clock: FakeClock) -> None:
    first = subs.subscribe("ann@example.org")
    assert subs.subscribe("ann@example.org").action is SubscribeAction.THROTTLED
    clock.advance(minutes=60)
    second = subs.subscribe("ann@example.org")
    assert second.action is SubscribeAction.RESENT
    assert first.confirmation and second.confirmation
    assert subs.confirm(first.confirmation.token).status is ConfirmStatus.USED
    assert subs.confirm(second.confirmation.token).status is ConfirmStatus.CONFIRMED


def test_confirm_links_expire_with_the_configured_lifetime(
    settings: Settings, any_store: Store, clock: FakeClock
) -> None:
    settings.web.confirm_ttl_hours = 2
    subs = Subscribers(settings, any_store, clock=clock)
    result = subs.subscribe("ann@example.org")
    assert result.confirmation is not None
    clock.advance(hours=2, seconds=1)
    assert subs.confirm(result.confirmation.token).status is ConfirmStatus.EXPIRED
    assert subs.require("ann@example.org").status == "pending"


def test_racing_requests_for_one_new_address_make_one_row_and_one_link(subs: Subscribers) -> None:
    results = []
    barrier = threading.Barrier(8)

    def ask() -> None:
        barrier.wait()
        results.append(subs.subscribe("race@example.org"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(rows(subs.store)) == 1
    assert sum(r.confirmation is not None for r in results) == 1


def test_suppressed_addresses_come_back_only_by_confirming(
    subs: Subscribers, clock: FakeClock
) -> None:
    for status in ("unsubscribed", "bounced", "complained"):
        address = f"{status}@example.org"
        subs.add(address, source=ConsentSource.CLI_HELD)
        with subs.store.write() as session:
            sub = subs.require(address)
            sub.status = status
            session.add(sub)
        with pytest.raises(SubscriberError, match="only the person can come back"):
            subs.add(address, source=ConsentSource.CLI_HELD)
        result = subs.subscribe(address)
        assert result.action is SubscribeAction.RECONFIRM
        assert subs.require(address).status == status
        assert result.confirmation is not None
        assert subs.confirm(result.confirmation.token).status is ConfirmStatus.CONFIRMED


def test_unsubscribe_is_idempotent_and_kills_an_outstanding_link(subs: Subscribers) -> None:
    pending = subs.subscribe("ann@example.org")
    assert pending.confirmation is not None
    token = subs.tokens.unsubscribe_token(subs.require("ann@example.org").uid)
    assert subs.unsubscribe(token).changed is True
    assert subs.unsubscribe(token).changed is False
    assert subs.confirm(pending.confirmation.token).status is ConfirmStatus.USED
    with pytest.raises(TokenError):
        subs.unsubscribe(token[:-4])


def test_editor_add_with_consent_held(subs: Subscribers) -> None:
    assert (
        subs.add("ann@example.org", name="Ann", source=ConsentSource.CLI_HELD).action
        is AddAction.ADDED
    )
    sub = subs.require("ann@example.org")
    assert (sub.status, sub.consent_source) == ("confirmed", "cli-consent-held")
    assert subs.add("ANN@example.org", source=ConsentSource.CLI_HELD).action is AddAction.UNCHANGED
    subs.subscribe("bob@example.org")
    assert subs.add("bob@example.org", source=ConsentSource.CLI_HELD).action is AddAction.CONFIRMED


def test_remove_and_forget(subs: Subscribers) -> None:
    subs.add("ann@example.org", source=ConsentSource.CLI_HELD)
    result = subs.remove("Ann@Example.org")
    assert result.changed and subs.require("ann@example.org").status == "unsubscribed"
    assert subs.forget("ann@example.org") == "ann@example.org"
    assert rows(subs.store) == []
    with pytest.raises(SubscriberNotFoundError, match="subscribers list"):
        subs.remove("ann@example.org")


def test_prune_removes_only_expired_pending(subs: Subscribers, clock: FakeClock) -> None:
    subs.subscribe("old@example.org")
    subs.add("kept@example.org", source=ConsentSource.CLI_HELD)
    clock.advance(hours=70)
    subs.subscribe("new@example.org")
    clock.advance(hours=3)
    assert subs.prune(dry_run=True).removed == ["old@example.org"]
    assert len(rows(subs.store)) == 3
    assert subs.prune().removed == ["old@example.org"]
    assert sorted(s.email for s in rows(subs.store)) == ["kept@example.org", "new@example.org"]


def test_count_lists_every_status(subs: Subscribers) -> None:
    subs.subscribe("a@example.org")
    subs.add("b@example.org", source=ConsentSource.CLI_HELD)
    assert subs.count() == {
        "pending": 1,
        "confirmed": 1,
        "unsubscribed": 0,
        "bounced": 0,
        "complained": 0,
    }
    assert [s.email for s in subs.all(status=SubscriberStatus.CONFIRMED.value)] == ["b@example.org"]
    with pytest.raises(SubscriberError, match="use one of"):
        subs.all(status="gone")


def test_timestamps_are_aware_utc(subs: Subscribers, clock: FakeClock) -> None:
    subs.subscribe("a@example.org")
    sub = subs.require("a@example.org")
    assert sub.confirm_sent_at == clock.now and sub.created_at.utcoffset() == timedelta(0)
