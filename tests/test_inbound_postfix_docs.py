"""docs/inbound.md's Postfix lines, read by Postfix's own tools (from Debian, as .ci/run installs).

The transport map must compile with `postmap` and route both of the list's
addresses to where `slice inbound` listens by default; the main.cf lines must be
parameters Postfix knows. If the default port or the addresses change, this
says the docs are out of date.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from newsletter.core.settings import Settings
from newsletter.send.inbound import list_addresses

DOC = Path(__file__).resolve().parent.parent / "docs" / "inbound.md"

pytestmark = pytest.mark.skipif(
    shutil.which("postmap") is None and not Path("/usr/sbin/postmap").exists(),
    reason="Postfix is not installed (Debian: apt-get install postfix)",
)


def block_after(label: str) -> str:
    """The fenced block that follows the line naming ``label`` in docs/inbound.md."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(re.escape(label) + r"[^\n]*\n\n```\n(.*?)```", text, re.S)
    assert match, f"no block after {label} in {DOC.name}"
    return match.group(1)


def postfix_dir(tmp_path: Path, main_cf: str = "") -> Path:
    folder = tmp_path / "postfix"
    folder.mkdir()
    (folder / "main.cf").write_text(main_cf, encoding="utf-8")
    (folder / "master.cf").write_text("", encoding="utf-8")
    return folder


def run(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which(args[0]) or f"/usr/sbin/{args[0]}"
    return subprocess.run([tool, *args[1:]], capture_output=True, text=True, timeout=60)


def test_the_transport_map_routes_both_addresses_to_slice_inbound(
    tmp_path: Path, settings: Settings
) -> None:
    folder = postfix_dir(tmp_path)
    transport = folder / "transport"
    transport.write_text(block_after("`/etc/postfix/transport`"), encoding="utf-8")
    made = run("postmap", "-c", str(folder), f"hash:{transport}")
    assert made.returncode == 0, made.stderr
    settings.newsletter.from_address = "Weekly <news@example.org>"
    conf = settings.inbound
    expected = f"lmtp:inet:{conf.host}:{conf.port}"
    for address in list_addresses(settings):  # bounces@example.org, unsubscribe@example.org
        found = run("postmap", "-c", str(folder), "-q", address, f"hash:{transport}")
        assert found.stdout.strip() == expected, (address, found.stdout, found.stderr)


def test_the_main_cf_lines_are_parameters_postfix_knows(tmp_path: Path) -> None:
    lines = block_after("`/etc/postfix/main.cf`")
    folder = postfix_dir(tmp_path, lines)
    shown = run("postconf", "-c", str(folder), "-n")
    # an unknown name gets "warning: ... unused parameter"
    assert shown.returncode == 0 and "warning" not in shown.stderr, shown.stderr
    assert "recipient_delimiter = +" in shown.stdout  # bounces+TOKEN@ finds bounces@
    assert "transport_maps = hash:/etc/postfix/transport" in shown.stdout


def test_the_virtual_map_compiles_and_keeps_each_address(tmp_path: Path) -> None:
    folder = postfix_dir(tmp_path)
    virtual = folder / "virtual"
    virtual.write_text(block_after("`/etc/postfix/virtual`"), encoding="utf-8")
    assert run("postmap", "-c", str(folder), f"hash:{virtual}").returncode == 0
    for address in ("bounces@example.org", "unsubscribe@example.org"):
        found = run("postmap", "-c", str(folder), "-q", address, f"hash:{virtual}")
        assert found.stdout.strip() == address
