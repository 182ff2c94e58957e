"""Signup and unsubscribe against a running uvicorn on 127.0.0.1.

- One-click unsubscribe (RFC 8058) as a mail provider sends it: a plain POST, no cookie.
- The whole opt-in in headless chromium with JavaScript switched off, by typing and
  clicking, at phone and desktop widths; screenshots go to tests/output/signup-<width>-<step>.png.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from newsletter.core.config import load_settings
from newsletter.core.project import init_project
from newsletter.core.store import Store
from newsletter.web import create_app
from tests.signup_support import links, rows, tamper
from tests.support.liveserver import LiveServer
from tests.support.smtpd import RecordingSMTPServer

OUTPUT = Path(__file__).parent / "output"


class Live:
    def __init__(self, root: Path, smtp: RecordingSMTPServer) -> None:
        self.smtp = smtp
        # the server's port is known only once it listens: links are rewritten to it
        settings = load_settings(
            config=root / "slice.toml",
            environ={
                "SLICE_SECRET_KEY": "live-test-secret-0123456789abcdef",
                "SLICE_SMTP_HOST": "127.0.0.1",
                "SLICE_SMTP_PORT": str(smtp.port),
            },
        )
        self.store = Store.open(settings.database_url)
        self.app = create_app(settings, store=self.store)
        self.server = LiveServer(self.app).start()
        settings.web.base_url = self.server.url
        self.url = self.server.url
        self.subscribers = self.app.state.subscribers

    def stop(self) -> None:
        self.server.stop()
        self.store.dispose()


@pytest.fixture
def live(tmp_path: Path, smtp_server: RecordingSMTPServer) -> Iterator[Live]:
    root = tmp_path / "project"
    init_project(root, name="Radiology AI Weekly")
    opened = Live(root, smtp_server)
    try:
        yield opened
    finally:
        opened.stop()


def confirmed_reader(live: Live, address: str) -> str:
    from newsletter.readers.subscribers import ConsentSource

    live.subscribers.add(address, source=ConsentSource.CLI_HELD)
    [sub] = [s for s in rows(live.store) if s.email == address]
    return f"{live.url}/unsubscribe/{live.subscribers.tokens.unsubscribe_token(sub.uid)}"


def test_one_click_unsubscribe_over_real_http(live: Live) -> None:
    urlencoded = confirmed_reader(live, "ann@example.org")
    multipart = confirmed_reader(live, "bob@example.org")
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        for _ in range(2):
            answer = client.post(
                urlencoded,
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert answer.status_code == 200 and "You're unsubscribed" in answer.text
            assert "set-cookie" not in answer.headers
            answer = client.post(multipart, files={"List-Unsubscribe": (None, "One-Click")})
            assert answer.status_code == 200 and "You're unsubscribed" in answer.text
        tampered = client.post(tamper(urlencoded), data={"List-Unsubscribe": "One-Click"})
        assert tampered.status_code == 400
    assert {s.email: s.status for s in rows(live.store)} == {
        "ann@example.org": "unsubscribed",
        "bob@example.org": "unsubscribed",
    }


# --- in a browser ----------------------------------------------------------------------------


def _browser_support() -> tuple[object, str | None]:
    try:
        from tests.support.browser import Browser, find_chromium
    except ImportError:
        return None, None
    return Browser, find_chromium()


BROWSER, CHROMIUM = _browser_support()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="headless chromium is not installed")
@pytest.mark.parametrize("width", [375, 1280])
def test_the_opt_in_by_clicking_without_javascript(live: Live, width: int) -> None:
    assert CHROMIUM is not None
    with BROWSER(CHROMIUM) as browser:  # type: ignore[operator]
        browser.viewport(width, 800 if width > 400 else 740, mobile=width < 400)

        def shot(step: str) -> None:
            assert browser.overflowing() == [], step
            browser.screenshot(OUTPUT / f"signup-{width}-{step}.png")

        browser.open(live.url + "/subscribe")
        shot("1-signup")
        browser.send("Emulation.setScriptExecutionDisabled", {"value": True})
        browser.open(live.url + "/subscribe")  # a fresh page, scripts off

        # a wrong address is answered on the same page, with what was typed kept
        browser.type("#signup-email", "reader@example")
        browser.click(".signup button", navigates=True)
        shot("2-error")

        browser.type("#signup-email", f"reader{width}@example.org")
        browser.type("#signup-name", "Rita Reader")
        browser.click(".signup button", navigates=True)
        shot("3-check-inbox")
        live.smtp.wait_for(1, timeout=20)  # the email leaves after the page is answered
        [message] = live.smtp.parsed()
        [link] = links(message, "confirm")

        browser.open(link)  # what a link scanner sees: a page with one button
        shot("4-confirm")
        assert {s.status for s in rows(live.store)} == {"pending"}  # opening it changed nothing
        browser.click("form button", navigates=True)
        shot("4-confirmed")
        live.smtp.wait_for(2, timeout=20)
        [_, welcome] = live.smtp.parsed()
        for name, email in (("confirm-email", message), ("welcome-email", welcome)):
            page = OUTPUT / f"signup-{width}-{name}.html"
            page.write_text(str(email.get_body(("html",)).get_content()), encoding="utf-8")  # type: ignore[union-attr]
            browser.open(page.as_uri())
            shot(name)
        [unsubscribe] = links(welcome, "unsubscribe")
        browser.open(unsubscribe)
        shot("5-unsubscribe")
        assert {s.status for s in rows(live.store)} == {"confirmed"}  # opening it changed nothing
        browser.click("form button", navigates=True)
        shot("6-unsubscribed")
        assert {s.status for s in rows(live.store)} == {"unsubscribed"}

        browser.open(re.sub(r"/confirm/.*", "/confirm/not-a-token", link))
        shot("7-bad-link")


def test_slice_serve_runs_the_app(project: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    script = Path(sys.executable).parent / "slice"
    if not script.exists():
        pytest.skip("the `slice` console script is not installed in this environment")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLICE_")}
    env.update(
        SLICE_SECRET_KEY="serve-test-secret-0123456789", SLICE_CONFIG=str(project / "slice.toml")
    )
    proc = subprocess.Popen(
        [str(script), "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/subscribe", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    "slice serve did not start"
                )
                time.sleep(0.1)
        assert page.status_code == 200 and 'name="form_token"' in page.text
        assert "Test Weekly" in page.text
        # a connection left idle for longer than uvicorn's default 5 s is still open: a
        # proxy (or browser) that reuses it gets an answer, not a dropped request
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            ask = b"GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            assert _answer(conn, ask).startswith(b"HTTP/1.1 200")
            time.sleep(6)
            assert _answer(conn, ask).startswith(b"HTTP/1.1 200")
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert f"Serving Test Weekly on http://127.0.0.1:{port}" in stderr


def _answer(conn: socket.socket, request: bytes) -> bytes:
    """Send ``request`` on ``conn`` and read one whole response (Content-Length framed)."""
    conn.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length: *(\d+)", head)[1])  # type: ignore[index]
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return data
