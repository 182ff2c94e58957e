"""The signup, confirm and unsubscribe pages through the real app (httpx over ASGI).

Confirmation and welcome emails go through the real SMTP transport to the
recording aiosmtpd server, and their links are followed as a reader would.
Time is a fake clock, so expiry and the resend interval are tested without waiting.
"""

from __future__ import annotations

import asyncio
from datetime import date
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import httpx
import pytest

from newsletter.core.models import Issue, IssueStatus, SubscriberStatus
from newsletter.core.store import Store
from newsletter.readers.addresses import derive_list_id
from tests.signup_support import (  # noqa: F401 - asyncio_backend, signup_site: fixtures
    BASE,
    Site,
    asyncio_backend,
    form_token,
    links,
    one,
    path_of,
    rows,
    signup_site,
    smtp_settings,
    tamper,
    text_part,
)
from tests.support.smtpd import RecordingSMTPServer

pytestmark = pytest.mark.anyio


# --- the whole loop, as a reader ------------------------------------------------------


async def test_reader_subscribes_confirms_and_leaves_with_one_click(site: Site) -> None:
    page = await site.client.get("/subscribe")
    assert page.status_code == 200
    assert "We respect your privacy" in page.text or site.settings.newsletter.promise in page.text
    assert '<label for="signup-email">Email address</label>' in page.text

    answer = await site.subscribe("Ann.Reader@Example.org", "Ann Reader")
    assert answer.status_code == 200
    assert "Check your inbox" in answer.text
    assert "works for 3 days" in answer.text and "new link after an hour" in answer.text
    sub = one(site.store)
    assert (sub.status, sub.email, sub.email_key) == (
        "pending",
        "Ann.Reader@example.org",
        "ann.reader@example.org",
    )
    assert sub.consent_source == "web"

    [confirm_mail] = site.mail()
    assert confirm_mail["To"].addresses[0].addr_spec == "Ann.Reader@example.org"
    assert "Ann Reader" not in str(
        confirm_mail["To"]
    )  # nothing the requester typed but the address
    assert confirm_mail.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in confirm_mail.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    [link] = links(confirm_mail, "confirm")
    assert link.startswith(BASE + "/confirm/")
    assert link in confirm_mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "works for 3 days" in text_part(confirm_mail)

    confirmed = await site.confirm(path_of(link))
    assert confirmed.status_code == 200
    assert "You're subscribed" in confirmed.text and "What comes next" in confirmed.text
    assert confirmed.headers["referrer-policy"] == "no-referrer"
    sub = one(site.store)
    assert sub.status == "confirmed"
    assert sub.confirm_ip == "203.0.113.7"
    assert sub.confirmed_at == site.clock.now

    [_, welcome] = site.mail()
    assert welcome["Subject"] == f"Welcome to {site.settings.newsletter.name}"
    assert welcome["To"].addresses[0].display_name == "Ann Reader"
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(welcome["List-Id"]).endswith(f"<{derive_list_id(site.settings)}>")  # as on issues
    header_url = str(welcome["List-Unsubscribe"]).split(">")[0].lstrip("<")
    [body_url] = links(welcome, "unsubscribe")
    assert header_url == body_url and "=?" not in str(welcome["List-Unsubscribe"])

    # a link scanner (or the reader) opening the link changes nothing
    for _ in range(3):
        page = await site.client.get(path_of(body_url))
        assert page.status_code == 200 and "<button" in page.text
    assert one(site.store).status == "confirmed"

    left = await site.client.post(
        path_of(header_url),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert left.status_code == 200 and "You're unsubscribed" in left.text
    assert "set-cookie" not in left.headers
    sub = one(site.store)
    assert sub.status == "unsubscribed" and sub.unsubscribed_at == site.clock.now


async def test_the_answer_is_the_same_for_new_pending_and_confirmed_addresses(site: Site) -> None:
    await site.subscribe("known@example.org")
    await site.confirm(path_of(links(site.mail()[0], "confirm")[0]))
    await site.subscribe("waiting@example.org")
    site.clock.advance(minutes=5)

    def page_for(text: str, address: str) -> str:
        return text.replace(address, "ADDRESS")

    new = await site.subscribe("new@example.org")
    pending = await site.subscribe("waiting@example.org")
    confirmed = await site.subscribe("known@example.org")
    assert new.status_code == pending.status_code == confirmed.status_code == 200
    assert (
        page_for(new.text, "new@example.org")
        == page_for(pending.text, "waiting@example.org")
        == page_for(confirmed.text, "known@example.org")
    )
    # only the new address got mail just now (pending was mailed 5 minutes ago)
    assert [m["To"].addresses[0].addr_spec for m in site.mail()[-1:]] == ["new@example.org"]
    assert len(site.mail_to("known@example.org")) == 2  # its confirmation and its welcome only


async def test_a_thousand_posts_for_one_address_send_one_email(site: Site) -> None:
    # the resend interval alone (the hourly form limits would stop this flood sooner)
    site.settings.web.signups_per_ip_per_hour = 0
    site.settings.web.signups_per_address_per_hour = 0
    token = await site.token()

    async def post() -> int:
        answer = await site.client.post(
            "/subscribe", data={"email": "flood@example.org", "form_token": token}
        )
        return answer.status_code

    codes: list[int] = []
    for _ in range(20):
        codes += await asyncio.gather(*(post() for _ in range(50)))
    assert codes == [200] * 1000
    assert len(site.mail()) == 1
    assert len(rows(site.store)) == 1

    first_link = links(site.mail()[0], "confirm")[0]
    site.clock.advance(minutes=59)
    await site.subscribe("flood@example.org")
    assert len(site.mail()) == 1
    site.clock.advance(minutes=1)
    await site.subscribe("FLOOD@example.org")
    assert len(site.mail()) == 2
    second_link = links(site.mail()[1], "confirm")[0]

    # only the newest link works; the older one says so and changes nothing
    old = await site.confirm(path_of(first_link))
    assert old.status_code == 410 and "has been replaced" in old.text
    assert one(site.store).status == "pending"
    assert (await site.confirm(path_of(second_link))).status_code == 200
    assert one(site.store).status == "confirmed"


async def test_one_client_cannot_use_the_form_to_mail_many_strangers(site: Site) -> None:
    assert site.settings.web.signups_per_ip_per_hour == 10
    for i in range(10):
        assert (await site.subscribe(f"stranger{i}@example.org")).status_code == 200
    blocked = await site.subscribe("stranger10@example.org", "Name")
    assert blocked.status_code == 429 and "Too many sign-ups" in blocked.text
    assert 'value="stranger10@example.org"' in blocked.text
    assert len(site.mail()) == 10 and len(rows(site.store)) == 10

    other = httpx.AsyncClient(
        transport=httpx.ASGITransport(site.app, client=("198.51.100.20", 4444)), base_url=BASE
    )
    async with other:
        page = await other.get("/subscribe")
        answer = await other.post(
            "/subscribe",
            data={"email": "someone@example.org", "form_token": form_token(page.text)},
        )
    assert answer.status_code == 200 and len(site.mail()) == 11

    site.clock.advance(hours=1)
    assert (await site.subscribe("stranger10@example.org")).status_code == 200
    assert len(site.mail()) == 12


async def test_a_confirmation_the_relay_refused_is_sent_once_it_is_back(site: Site) -> None:
    site.smtp.refuse_all = "421 4.7.0 Try again later"
    answer = await site.subscribe("unlucky@example.org")
    assert answer.status_code == 200 and "we'll email it a link" in answer.text
    assert "we have sent" not in answer.text  # the page says only what it knows
    assert one(site.store).status == "pending" and site.mail() == []
    queue = site.app.state.mail_queue
    assert queue.pending() == 1  # kept, to be tried again
    site.smtp.refuse_all = None
    await site.subscribe("unlucky@example.org")  # within the resend interval: nothing new
    assert site.mail() == [] and queue.pending() == 1
    site.clock.advance(seconds=31)  # the first retry is due after 30 s
    report = await queue.drain()
    assert report.sent == ["unlucky@example.org"] and queue.pending() == 0
    [message] = site.mail_to("unlucky@example.org")
    assert (await site.confirm(path_of(links(message, "confirm")[0]))).status_code == 200
    assert one(site.store).status == "confirmed"


# --- bad input on the form ------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("not-an-address", "An email address must have an @-sign"),
        ("bob@localhost", "should have a period"),
        ("a" * 65 + "@example.org", "too long before the @-sign"),
        ("bob@" + "x" * 250 + ".org", "too long"),
        ("bøb@example.org", "Internationalized characters before the @-sign are not supported"),
        ("bob@example.org\r\nBcc: victim@example.net", "line break or control character"),
        ("robert'); DROP TABLE subscribers;--@example.org", "invalid characters"),
        ("bob@foo.local", "special-use or reserved name"),
        ("   ", "Please enter your email address"),
    ],
)
async def test_bad_addresses_get_a_clear_answer_and_change_nothing(
    site: Site, address: str, says: str
) -> None:
    answer = await site.subscribe(address, "Bob")
    assert answer.status_code == 400
    assert says in answer.text
    assert 'aria-invalid="true"' in answer.text or "Please enter" in answer.text
    form_token(answer.text)  # the form is shown again, ready to resubmit
    assert rows(site.store) == [] and site.mail() == []


async def test_sql_like_text_is_only_text(site: Site) -> None:
    answer = await site.subscribe("o'brien+news@example.ie", "Robert'); DROP TABLE subscribers;--")
    assert answer.status_code == 200
    sub = one(site.store)
    assert sub.email == "o'brien+news@example.ie"
    assert sub.name == "Robert'); DROP TABLE subscribers;--"
    assert site.subscribers.count()["pending"] == 1


async def test_non_ascii_domains_are_stored_as_idna_and_are_one_person(site: Site) -> None:
    assert (await site.subscribe("Jorg@Bücher.de")).status_code == 200
    assert (await site.subscribe("jorg@xn--bcher-kva.de")).status_code == 200
    sub = one(site.store)
    assert sub.email == "Jorg@xn--bcher-kva.de" and sub.email_key == "jorg@xn--bcher-kva.de"
    [received] = site.smtp.messages
    assert received.rcpt_tos == ["Jorg@xn--bcher-kva.de"]


async def test_line_breaks_in_the_name_are_refused(site: Site) -> None:
    answer = await site.subscribe("eve@example.org", "Eve\r\nBcc: victim@example.net")
    assert answer.status_code == 400 and "line break" in answer.text
    assert rows(site.store) == [] and site.mail() == []
    too_long = await site.subscribe("eve@example.org", "E" * 101)
    assert too_long.status_code == 400 and "too long" in too_long.text


async def test_header_text_in_the_name_stays_inside_the_quotes(site: Site) -> None:
    name = 'Eve <evil@example.net>, "x" other@example.net; Bcc: victim@example.net'
    await site.subscribe("eve@example.org", name)
    await site.confirm(path_of(links(site.mail()[0], "confirm")[0]))
    [_, welcome] = site.mail()
    to = getaddresses([str(welcome["To"])])
    assert [addr for _, addr in to] == ["eve@example.org"]
    assert welcome["Bcc"] is None and welcome["To"].addresses[0].display_name == name
    assert [r.rcpt_tos for r in site.smtp.messages] == [["eve@example.org"], ["eve@example.org"]]


async def test_posts_with_a_missing_field_are_answered_with_the_form(site: Site) -> None:
    token = await site.token()
    no_email = await site.client.post("/subscribe", data={"name": "Ann", "form_token": token})
    assert no_email.status_code == 400 and "Please enter your email address" in no_email.text
    assert 'value="Ann"' in no_email.text  # what was typed is kept
    no_name = await site.client.post(
        "/subscribe", data={"email": "ann@example.org", "form_token": token}
    )
    assert no_name.status_code == 200
    no_token = await site.client.post("/subscribe", data={"email": "bob@example.org"})
    assert no_token.status_code == 403 and "submit it again" in no_token.text
    empty = await site.client.post("/subscribe")
    assert empty.status_code == 403
    as_json = await site.client.post("/subscribe", json={"email": "carl@example.org"})
    assert as_json.status_code == 403
    broken = await site.client.post(
        "/subscribe",
        content=b"--xx\r\nbroken",
        headers={"content-type": "multipart/form-data; boundary=xx"},
    )
    assert broken.status_code in (400, 403)
    assert [s.email for s in rows(site.store)] == ["ann@example.org"]


async def test_oversized_and_odd_bodies_get_the_form_not_an_error(site: Site) -> None:
    token = await site.token()
    huge = await site.client.post(
        "/subscribe", data={"email": "a@example.org", "name": "x" * 20_000, "form_token": token}
    )
    assert huge.status_code == 413 and "far too large" in huge.text
    many = await site.client.post(
        "/subscribe",
        content="&".join(f"f{i}=1" for i in range(50)).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert many.status_code == 400 and "could not be read" in many.text
    upload = await site.client.post(
        "/subscribe",
        data={"email": "a@example.org", "form_token": token},
        files={"file": ("a.txt", b"abc")},
    )
    assert upload.status_code == 400
    bad_bytes = await site.client.post(
        "/subscribe",
        content=b"email=\xff\xfe&form_token=" + token.encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert bad_bytes.status_code == 400 and "not a valid email address" in bad_bytes.text
    assert rows(site.store) == []


async def test_the_honeypot_looks_like_success_and_does_nothing(site: Site) -> None:
    answer = await site.subscribe("bot@example.org", homepage="http://spam.example")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert rows(site.store) == [] and site.mail() == []


async def test_cross_site_posts_are_refused(site: Site) -> None:
    token = await site.token()
    data = {"email": "victim@example.org", "form_token": token}
    for headers in (
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "https://evil.example"},
    ):
        answer = await site.client.post("/subscribe", data=data, headers=headers)
        assert answer.status_code == 403, headers
        assert "another website" in answer.text
    assert rows(site.store) == []
    same = await site.client.post(
        "/subscribe", data=data, headers={"sec-fetch-site": "same-origin", "origin": BASE}
    )
    assert same.status_code == 200 and len(rows(site.store)) == 1


async def test_a_stale_or_forged_form_token_is_refused_with_a_fresh_form(site: Site) -> None:
    token = await site.token()
    site.clock.advance(days=3)
    stale = await site.client.post(
        "/subscribe", data={"email": "a@example.org", "form_token": token}
    )
    assert stale.status_code == 403 and "out of date" in stale.text
    forged = await site.client.post(
        "/subscribe", data={"email": "a@example.org", "form_token": tamper(token)}
    )
    assert forged.status_code == 403
    assert rows(site.store) == []
    fresh = form_token(stale.text)
    retry = await site.client.post(
        "/subscribe", data={"email": "a@example.org", "form_token": fresh}
    )
    assert retry.status_code == 200 and len(rows(site.store)) == 1


async def test_every_page_that_includes_the_form_can_submit_it(site: Site) -> None:
    home = await site.client.get("/")
    assert home.status_code == 200
    answer = await site.client.post(
        "/subscribe", data={"email": "home@example.org", "form_token": form_token(home.text)}
    )
    assert answer.status_code == 200 and len(site.mail()) == 1


# --- confirmation links ------------------------------------------------------------------


async def _pending_link(site: Site, address: str = "ann@example.org") -> str:
    await site.subscribe(address)
    return path_of(links(site.mail_to(address)[-1], "confirm")[0])


async def test_an_expired_link_offers_a_new_one_and_changes_nothing(site: Site) -> None:
    link = await _pending_link(site)
    site.clock.advance(hours=72, seconds=1)
    page = await site.confirm(link)
    assert page.status_code == 410
    assert "has expired" in page.text and 'name="form_token"' in page.text
    assert one(site.store).status == "pending"
    # the offered form sends a new link at once (the last one went out long ago)
    await site.client.post(
        "/subscribe", data={"email": "ann@example.org", "form_token": form_token(page.text)}
    )
    assert len(site.mail()) == 2
    assert (await site.confirm(path_of(links(site.mail()[1], "confirm")[0]))).status_code == 200


async def test_a_link_just_inside_its_lifetime_still_works(site: Site) -> None:
    link = await _pending_link(site)
    site.clock.advance(hours=71, minutes=59)
    assert (await site.confirm(link)).status_code == 200


@pytest.mark.parametrize("damage", ["forged", "truncated", "extended", "empty-signature"])
async def test_forged_and_truncated_links_are_refused(site: Site, damage: str) -> None:
    link = await _pending_link(site)
    token = link.rsplit("/", 1)[1]
    bad = {
        "forged": tamper(token),
        "truncated": token[: len(token) // 2],
        "extended": token + "x",
        "empty-signature": token.rsplit(".", 1)[0] + ".",
    }[damage]
    page = await site.client.get(f"/confirm/{bad}")
    assert page.status_code == 400 and "isn't valid" in page.text
    assert 'name="form_token"' in page.text  # offers a new link
    assert one(site.store).status == "pending" and len(site.mail()) == 1


async def test_a_replayed_link_confirms_once_and_sends_one_welcome(site: Site) -> None:
    link = await _pending_link(site)
    assert (await site.confirm(link)).status_code == 200
    again = await site.confirm(link)
    assert again.status_code == 200 and "already subscribed" in again.text
    assert len(site.mail()) == 2  # confirmation + one welcome


async def test_an_unsubscribe_token_does_not_confirm(site: Site) -> None:
    await _pending_link(site)
    sub = one(site.store)
    unsubscribe_token = site.subscribers.tokens.unsubscribe_token(sub.uid)
    page = await site.client.get(f"/confirm/{unsubscribe_token}")
    assert page.status_code == 400
    assert one(site.store).status == "pending"


async def test_a_confirm_token_does_not_unsubscribe(site: Site) -> None:
    link = await _pending_link(site)
    await site.confirm(link)
    token = link.rsplit("/", 1)[1]
    assert (await site.client.get(f"/unsubscribe/{token}")).status_code == 400
    assert (await site.client.post(f"/unsubscribe/{token}")).status_code == 400
    assert one(site.store).status == "confirmed"


async def test_a_link_for_a_forgotten_request_says_it_is_no_longer_valid(site: Site) -> None:
    link = await _pending_link(site)
    site.subscribers.forget("ann@example.org")
    page = await site.confirm(link)
    assert page.status_code == 410 and "no longer valid" in page.text
    assert rows(site.store) == []


async def test_the_welcome_links_to_the_latest_sent_issue(site: Site) -> None:
    with site.store.write() as session:
        session.add(
            Issue(
                id="2026-W09",
                number=9,
                window_start=date(2026, 2, 23),
                window_end=date(2026, 3, 1),
                status=IssueStatus.SENT.value,
                sent_at=site.clock.now,
            )
        )
    await site.confirm(await _pending_link(site))
    welcome = site.mail()[-1]
    assert f"{BASE}/issues/2026-W09" in text_part(welcome)


# --- unsubscribe ----------------------------------------------------------------------------


async def _confirmed(site: Site, address: str = "ann@example.org") -> str:
    await site.confirm(await _pending_link(site, address))
    return f"/unsubscribe/{site.subscribers.tokens.unsubscribe_token(one(site.store).uid)}"


@pytest.mark.parametrize("body", ["urlencoded", "multipart", "empty"])
async def test_one_click_bodies_unsubscribe_without_cookie_or_redirect(
    site: Site, body: str
) -> None:
    url = await _confirmed(site)
    bodies: dict[str, dict[str, Any]] = {
        "urlencoded": {"data": {"List-Unsubscribe": "One-Click"}},
        "multipart": {"files": {"List-Unsubscribe": (None, "One-Click")}},
        "empty": {},
    }
    kwargs = bodies[body]
    for _ in range(2):  # idempotent
        answer = await site.client.post(url, **kwargs)  # type: ignore[arg-type]
        assert answer.status_code == 200 and not answer.is_redirect
        assert "You're unsubscribed" in answer.text
    assert one(site.store).status == "unsubscribed"


async def test_a_tampered_unsubscribe_token_changes_nothing(site: Site) -> None:
    url = await _confirmed(site)
    for bad in (url[:-2], url + "A", tamper(url), url.replace("/unsubscribe/", "/unsubscribe/x")):
        answer = await site.client.post(bad, data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 400 and "isn't valid" in answer.text
        assert (await site.client.get(bad)).status_code == 400
    assert one(site.store).status == "confirmed"


async def test_the_unsubscribe_page_for_someone_already_gone(site: Site) -> None:
    url = await _confirmed(site)
    await site.client.post(url)
    page = await site.client.get(url)
    assert (
        page.status_code == 200
        and "You're not subscribed" in page.text
        and "<button" not in page.text
    )
    site.subscribers.forget("ann@example.org")
    assert (await site.client.post(url)).status_code == 200  # nothing left to unsubscribe


async def test_someone_who_left_is_mailed_again_only_after_confirming_anew(site: Site) -> None:
    url = await _confirmed(site)
    await site.client.post(url)
    before = len(site.mail())
    await site.subscribe("ann@example.org")
    assert one(site.store).status == SubscriberStatus.UNSUBSCRIBED  # not back yet
    assert len(site.mail()) == before + 1
    confirm = site.mail()[-1]
    assert confirm["Subject"].startswith("Confirm your subscription")
    await site.confirm(path_of(links(confirm, "confirm")[0]))
    sub = one(site.store)
    assert sub.status == "confirmed" and sub.unsubscribed_at is None


# --- what every page carries ---------------------------------------------------------------


async def test_pages_cannot_be_framed_and_errors_are_pages(site: Site) -> None:
    page = await site.client.get("/subscribe")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    missing = await site.client.get("/no/such/page")
    assert missing.status_code == 404 and "Page not found" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    assert (await site.client.get("/healthz")).text == "ok"


async def test_confirmation_and_welcome_are_dkim_signed_when_a_key_is_set(
    project: Path, smtp_environ: dict[str, str], smtp_server: RecordingSMTPServer, tmp_path: Path
) -> None:
    from tests.send_support import dkim_verify, make_dkim_key

    key, record = make_dkim_key(tmp_path)
    settings = smtp_settings(
        project,
        smtp_environ,
        SLICE_DKIM_KEY=str(key),
        SLICE_DKIM_SELECTOR="s1",
        SLICE_DKIM_DOMAIN="example.org",
    )
    with Store.open(settings.database_url) as store:
        signed = Site(settings, store, smtp_server)
        try:
            await signed.subscribe("ann@example.org", "Ann")
            await signed.confirm(path_of(links(signed.mail()[0], "confirm")[0]))
        finally:
            await signed.close()
    confirm, welcome = (m.data for m in smtp_server.messages)
    assert confirm.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    assert dkim_verify(confirm, record) and dkim_verify(welcome, record)
    signed_names = welcome.split(b"h=", 1)[1].split(b";", 1)[0].replace(b"\r\n\t", b"")
    assert b"list-unsubscribe:" in signed_names and b"list-unsubscribe-post" in signed_names
    assert not dkim_verify(
        confirm.replace(b"Confirm your subscription", b"Confirm your subscriptioN"), record
    )
