"""`slice serve` as a subprocess on 127.0.0.1 (a free port), for tests across processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SCRIPT = Path(sys.executable).parent / "slice"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SliceServe:
    """Runs ``slice serve --port P --workers N`` for a project; `stop` ends it by its pid."""

    def __init__(
        self, project: Path, *, workers: int = 1, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SLICE_")}
        clean.update(SLICE_CONFIG=str(project / "slice.toml"), **(env or {}))
        clean.setdefault("SLICE_SECRET_KEY", "serve-test-secret-0123456789")
        self.proc = subprocess.Popen(
            [str(SCRIPT), "serve", "--port", str(self.port), "--workers", str(workers)],
            env=clean,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr = ""

    def start(self, timeout: float = 120) -> SliceServe:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"slice serve did not start: {self.stderr}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, self.stderr = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate(timeout=5)
