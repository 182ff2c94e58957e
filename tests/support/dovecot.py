"""A real IMAP server for tests: Debian's dovecot on 127.0.0.1, a free port, a temporary config.

    with Dovecot(tmp_path) as server:      # user "bounces", password server.password
        server.port ...

It runs in the foreground (``dovecot -F``) as a child of the test, keeps every
file under the folder it is given, and is stopped when the block ends.
`available()` says whether it can run here (tests skip with its reason).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

DOVECOT = "/usr/sbin/dovecot"
IMAP_BINARY = "/usr/lib/dovecot/imap"

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {base_dir}
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {login_user}
default_internal_user = {internal_user}
mail_location = maildir:{shared}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {shared}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={shared}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


def available() -> str | None:
    """None when dovecot can run here, else why not."""
    if not (Path(DOVECOT).is_file() and Path(IMAP_BINARY).is_file()):
        return "dovecot is not installed (Debian: apt-get install dovecot-imapd)"
    if os.getuid() == 0:
        import pwd

        try:
            pwd.getpwnam("dovenull")
            pwd.getpwnam("dovecot")
        except KeyError:
            return "dovecot's users (dovenull, dovecot) are missing; reinstall dovecot-core"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Dovecot:
    """dovecot serving one mailbox user over plain IMAP on 127.0.0.1."""

    def __init__(
        self, root: Path, *, user: str = "bounces", password: str = "imap-test-pw"
    ) -> None:
        self.root = root
        self.user = user
        self.password = password
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._shared: Path | None = None

    def start(self) -> Self:
        import pwd

        for sub in ("run", "state", "mail", "home"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        me = pwd.getpwuid(os.getuid())
        login_user = internal_user = me.pw_name
        uid, gid = me.pw_uid, me.pw_gid
        shared = self.root
        if os.getuid() == 0:
            # dovecot refuses root as the mail user and runs its login and internal
            # processes as the unprivileged users Debian's package creates; they must reach
            # the sockets and the mail, which therefore live in a world-traversable folder
            # of their own (not under root's private temporary folder), mail owned by nobody
            login_user, internal_user = "dovenull", "dovecot"
            nobody = pwd.getpwnam("nobody")
            uid, gid = nobody.pw_uid, nobody.pw_gid
            shared = self._shared = Path(tempfile.mkdtemp(prefix="slice-dovecot-"))
            shared.chmod(0o755)
            for sub in ("mail", "home"):
                (shared / sub).mkdir()
                os.chown(shared / sub, uid, gid)
        # read by dovecot's auth worker, which runs as its internal user
        (shared / "users").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        config = self.root / "dovecot.conf"
        config.write_text(
            CONFIG.format(
                root=self.root,
                shared=shared,
                base_dir=shared / "run",
                login_user=login_user,
                internal_user=internal_user,
                uid=uid,
                gid=gid,
                port=self.port,
            )
        )
        self._proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                log = self.root / "dovecot.log"
                raise RuntimeError(
                    f"dovecot exited: {err} {log.read_text() if log.exists() else ''}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("dovecot did not answer on its port within 20 s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        self._proc = None
        if self._shared is not None:
            shutil.rmtree(self._shared, ignore_errors=True)
        self._shared = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


__all__ = ["Dovecot", "available"]
