"""A small driver for headless chromium over the DevTools protocol (on a pipe, no websockets).

Enough for page tests: open a URL at a given viewport, click an element with a
real mouse event, type text, read the DOM through JavaScript, take a screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def find_chromium() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless chromium with one page; use as a context manager."""

    def __init__(self, executable: str, *, timeout: float = 15.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="slice-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child_fds() -> None:  # the protocol pipe is fds 3 (in) and 4 (out) in chromium
            read_end = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self._proc = subprocess.Popen(
            [
                executable,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--mute-audio",
                "--remote-debugging-pipe",
                f"--user-data-dir={self._profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child_fds,
            close_fds=False,  # Python's own fds are non-inheritable; only 3 and 4 pass
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._session = ""
        # a cold chromium (first launch, profile being made, the other test process
        # starting one too) can take longer than a command may: start-up gets a minute
        self.timeout = max(timeout, 60.0)
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send(
            "Target.attachToTarget",
            {"targetId": target["targetId"], "flatten": True},
            session=False,
        )
        self._session = attached["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.timeout = timeout

    # --- protocol ------------------------------------------------------------

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._cond.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._cond:
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self._events.append(message)
                    self._cond.notify_all()

    def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: bool = True
    ) -> Any:
        with self._cond:
            self._next_id += 1
            ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session and self._session:
            message["sessionId"] = self._session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while ident not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self._proc.poll() is not None:
                    raise BrowserError(f"no answer to {method}")
                self._cond.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def _wait_event(self, name: str, since: int) -> None:
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while not any(e.get("method") == name for e in self._events[since:]):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"timed out waiting for {name}")
                self._cond.wait(left)

    def _mark(self) -> int:
        with self._cond:
            return len(self._events)

    # --- what a test does ------------------------------------------------------

    def viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    def open(self, url: str) -> None:
        mark = self._mark()
        self.send("Page.navigate", {"url": url})
        self._wait_event("Page.loadEventFired", mark)

    def js(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str, *, navigates: bool = False) -> None:
        """A real mouse click in the middle of the element (scrolled into view first)."""
        point = self.js(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (!el) return null; el.scrollIntoView({block: 'center'});"
            " const r = el.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        if point is None:
            raise BrowserError(f"nothing matches {selector}")
        mark = self._mark()
        for kind in ("mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": point[0], "y": point[1], "button": "left", "clickCount": 1},
            )
        if navigates:
            self._wait_event("Page.loadEventFired", mark)

    def type(self, selector: str, text: str) -> None:
        """Click into a field, clear it, and type ``text``."""
        self.click(selector)
        self.js(f"document.querySelector({json.dumps(selector)}).select()")
        self.send("Input.insertText", {"text": text})

    def screenshot(
        self, path: Path, *, full_page: bool = True, clip: tuple[int, int, int, int] | None = None
    ) -> Path:
        """Save a PNG of the page (or of ``clip``: x, y, width, height in CSS pixels)."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if clip is not None:
            x, y, w, h = clip
            params["clip"] = {"x": x, "y": y, "width": w, "height": h, "scale": 1}
        data = self.send("Page.captureScreenshot", params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def overflowing(self) -> list[str]:
        """Visible elements that stick out past the right edge of the viewport."""
        return list(
            self.js(
                "(() => { const w = document.documentElement.clientWidth; const out = [];"
                " for (const el of document.querySelectorAll('body *')) {"
                "  const r = el.getBoundingClientRect();"
                "  if (r.width && r.height && r.right > w + 1 && getComputedStyle(el).visibility !== 'hidden'"
                "      && !el.closest('.hp')) out.push(el.tagName + (el.id ? '#' + el.id : '')"
                "      + (el.className ? '.' + String(el.className).split(' ')[0] : '') + ' right=' + Math.round(r.right)); }"
                " if (document.documentElement.scrollWidth > w) out.push('page scrollWidth=' + document.documentElement.scrollWidth);"
                " return out; })()"
            )
        )

    def close(self) -> None:
        with contextlib.suppress(BrowserError):
            self.send("Browser.close", session=False)
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        for fd in (self._to_chrome, self._from_chrome):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._reader.join(5)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
