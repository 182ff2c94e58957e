"""A full or read-only outbox: compose, send and `send --dry-run` end in one line, nothing left.

How the conditions are made, without mounting anything:

- full: the file a command is about to write is a symlink to ``/dev/full`` (every write
  fails with ENOSPC, as on a full disk), or the process's RLIMIT_FSIZE is lowered below
  the file's size for the command (EFBIG; Python ignores SIGXFSZ);
- read-only: the folder is ``chmod 555``, or, for root (whom modes do not stop), marked
  immutable with ``chattr +i``; the test is skipped where neither works.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import Result

from newsletter.core.config import load_settings
from newsletter.core.store import Store
from tests.composedata import WEEK, add_papers, project_settings
from tests.send_support import ISSUE, add_readers, write_issue

Run = Callable[..., Result]


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)], check=False).returncode:
        pytest.skip("running as root, and chattr +i does not work here: no read-only folder")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def one_line_error(result: Result, says: str = "Error: cannot write the outbox (") -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(says), result.stderr


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".eml")))


# --- compose --------------------------------------------------------------------------------


@pytest.fixture
def composed(project: Path, environ: dict[str, str], run_cli: Run) -> Path:
    settings = project_settings(project, environ)
    with Store.open(settings.database_url) as store:
        add_papers(store)
    assert run_cli("compose", "--week", WEEK).exit_code == 0
    return project / "outbox" / WEEK


def test_compose_into_a_full_outbox(composed: Path, run_cli: Run) -> None:
    before = {p.name: p.read_bytes() for p in composed.iterdir() if p.is_file()}
    # the next render's email.html goes to a full disk
    (composed / f".email.html.{os.getpid()}.tmp").symlink_to("/dev/full")
    result = run_cli("compose", "--week", WEEK, "--reselect")
    one_line_error(result)
    assert "No space left on device" in result.stderr and str(composed) in result.stderr
    assert leftovers(composed) == []
    assert {p.name: p.read_bytes() for p in composed.iterdir() if p.is_file()} == before


def test_compose_into_a_read_only_outbox(
    project: Path, environ: dict[str, str], run_cli: Run
) -> None:
    settings = project_settings(project, environ)
    with Store.open(settings.database_url) as store:
        add_papers(store)
    outbox = project / "outbox"
    with read_only(outbox):
        result = run_cli("compose", "--week", WEEK)
    one_line_error(result)
    assert list(outbox.iterdir()) == []


# --- send and its dry run ---------------------------------------------------------------


@pytest.fixture
def ready(project: Path, smtp_environ: dict[str, str]) -> Path:
    settings = load_settings(config=project / "slice.toml", environ=smtp_environ)
    with Store.open(settings.database_url) as store:
        folder = write_issue(settings, store)
        add_readers(store, 3)
    return folder.root


def test_send_with_a_full_outbox(ready: Path, run_cli: Run, smtp_environ: dict[str, str]) -> None:
    (ready / ".send.lock").symlink_to("/dev/full")
    result = run_cli("send", ISSUE, "--rate", "0", env=smtp_environ)
    one_line_error(result)
    assert "run the send again" in result.stderr


def test_send_with_a_read_only_outbox(
    ready: Path, run_cli: Run, smtp_environ: dict[str, str]
) -> None:
    with read_only(ready):
        result = run_cli("send", ISSUE, "--rate", "0", env=smtp_environ)
    one_line_error(result)
    assert not (ready / ".send.lock").exists()


def test_dry_run_into_a_full_outbox(
    ready: Path, run_cli: Run, smtp_environ: dict[str, str]
) -> None:
    assert run_cli("send", ISSUE, "--dry-run", env=smtp_environ).exit_code == 0
    assert min(p.stat().st_size for p in (ready / "dry-run").iterdir()) > 40_000
    # each message is larger than this (SQLite's 32 KiB -shm file is not): the first
    # message's write fails (EFBIG)
    with file_size_limit(36_000):
        result = run_cli("send", ISSUE, "--dry-run", env=smtp_environ)
    one_line_error(result)
    assert "File too large" in result.stderr and "run the dry run again" in result.stderr
    assert leftovers(ready) == []


def test_dry_run_into_a_read_only_outbox(
    ready: Path, run_cli: Run, smtp_environ: dict[str, str]
) -> None:
    with read_only(ready):
        result = run_cli("send", ISSUE, "--dry-run", env=smtp_environ)
    one_line_error(result)
    assert not (ready / "dry-run").exists()
