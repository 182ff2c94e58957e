"""The CLI frame: help everywhere, `slice init`, and how errors reach a person."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from newsletter import __version__
from newsletter.cli import app
from newsletter.core.config import load_settings
from newsletter.readers.addresses import parse_address


def all_commands() -> list[list[str]]:
    """Every command path, e.g. ['subscribers', 'add']."""
    root = get_command(app)
    found: list[list[str]] = []

    def walk(group: Any, path: list[str]) -> None:
        if hasattr(group, "commands"):
            for name, sub in group.commands.items():
                found.append([*path, name])
                walk(sub, [*path, name])

    walk(root, [])
    return found


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"slice {__version__}"


def test_root_help_lists_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for path in all_commands():
        if len(path) == 1:
            assert path[0] in result.stdout


@pytest.mark.parametrize("group", [[], ["subscribers"], ["bounces"]], ids=lambda p: " ".join(p))
def test_command_lists_show_each_summary_whole(group: list[str]) -> None:
    """The list of commands wraps each one's first sentence rather than cutting it with '...'."""
    result = CliRunner().invoke(app, [*group, "--help"], terminal_width=80)
    assert result.exit_code == 0
    commands = result.stdout.split("Commands:", 1)[1]
    assert "..." not in commands
    if not group:
        assert "store them\n               (one record per work)." in commands
    assert max(len(line) for line in commands.splitlines()) <= 80


HEAVY = ("httpx", "feedparser", "aiosmtpd", "aiosmtplib", "pydantic", "sqlalchemy", "fastapi")
_LOADED_BY_HELP = """
import sys
from newsletter.cli import app
try:
    app([*{args!r}, "--help"], standalone_mode=False)
except SystemExit:
    pass
print("LOADED:", *(m for m in {heavy!r} if m in sys.modules))
"""


def loaded_by_help(args: list[str]) -> set[str]:
    code = _LOADED_BY_HELP.format(args=args, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    [line] = [x for x in done.stdout.splitlines() if x.startswith("LOADED:")]
    return set(line.split()[1:])


def test_help_loads_none_of_the_machinery() -> None:
    """`slice --help` answers before any part of the flow (or pydantic) loads."""
    assert loaded_by_help([]) == set()


@pytest.mark.parametrize("path", [["fetch"], ["send"], ["serve"], ["subscribers", "import"]])
def test_a_command_help_loads_none_of_the_machinery(path: list[str]) -> None:
    """A command's --help loads no part of the flow (Typer itself brings pydantic)."""
    assert loaded_by_help(path) <= {"pydantic"}


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p))
def test_every_command_has_help(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    command = get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert command.help and len(command.help.strip()) > 15, (
        f"`slice {' '.join(path)}` needs a real help text"
    )


def test_init_creates_a_project(tmp_path: Path) -> None:
    target = tmp_path / "weekly"
    result = CliRunner().invoke(app, ["init", str(target), "--name", "Radiology AI Weekly"])
    assert result.exit_code == 0, result.output
    assert (target / "slice.toml").is_file()
    for folder in ("templates", "subscribers", "outbox"):
        assert (target / folder).is_dir()
    assert 'name = "Radiology AI Weekly"' in (target / "slice.toml").read_text()
    settings = load_settings(config=target / "slice.toml", environ={})
    assert settings.newsletter.name == "Radiology AI Weekly"
    assert settings.newsletter.from_address == "Radiology AI Weekly <newsletter@example.org>"


def test_init_name_with_a_comma_stays_one_sender(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["init", str(tmp_path / "w"), "--name", 'Imaging, "AI" & Co'])
    assert result.exit_code == 0, result.output
    settings = load_settings(config=tmp_path / "w" / "slice.toml", environ={})
    sender = parse_address(settings.newsletter.from_address)
    assert sender.display_name == 'Imaging, "AI" & Co'
    assert sender.addr_spec == "newsletter@example.org"
    assert "created" in result.stdout


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "weekly"
    CliRunner().invoke(app, ["init", str(target)])
    (target / "slice.toml").write_text('[newsletter]\nname = "Mine"\n')
    result = CliRunner().invoke(app, ["init", str(target)])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert "already exists" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert (target / "slice.toml").read_text() == '[newsletter]\nname = "Mine"\n'


def test_library_error_is_one_line_exit_1(tmp_path: Path) -> None:
    (tmp_path / "slice.toml").write_text("[smtp]\nprot = 25\n")
    result = CliRunner().invoke(
        app, ["--config", str(tmp_path / "slice.toml"), "init", str(tmp_path / "new")]
    )
    # init needs no settings, so it works even with a broken slice.toml elsewhere
    assert result.exit_code == 0


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    CliRunner().invoke(app, ["init", str(tmp_path)])
    plain = CliRunner().invoke(app, ["init", str(tmp_path)])
    debug = CliRunner().invoke(app, ["--debug", "init", str(tmp_path)])
    assert plain.exit_code == debug.exit_code == 1
    assert "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr and "ProjectExistsError" in debug.stderr


def test_usage_error_is_exit_2() -> None:
    result = CliRunner().invoke(app, ["init", "--no-such-flag"])
    assert result.exit_code == 2


def test_console_script_runs(tmp_path: Path) -> None:
    """The installed `slice` entry point, as a new user runs it."""
    exe = Path(sys.executable).parent / "slice"
    result = subprocess.run(
        [str(exe), "init", str(tmp_path / "p")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    again = subprocess.run(
        [str(exe), "init", str(tmp_path / "p")], capture_output=True, text=True, check=False
    )
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and again.stderr.startswith("Error: ")


def _bare_env() -> dict[str, str | None]:
    """The environment with no SLICE_* variable, as on a machine nobody configured."""
    import os

    return {k: None for k in os.environ if k.startswith("SLICE_")}


@pytest.mark.parametrize(
    "args", [["compose"], ["subscribers", "list"], ["papers"], ["send", "2025-W01"]]
)
def test_a_command_outside_a_project_refuses_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """Typed in the wrong folder, a command says so instead of making a newsletter there."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args, env=_bare_env())
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1
    assert f"no slice.toml in {tmp_path}" in result.stderr and "slice init" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no subscribers/slice.db, no outbox/


def test_init_then_commands_in_the_project_folder_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CliRunner().invoke(app, ["init", str(tmp_path / "p")], env=_bare_env()).exit_code == 0
    monkeypatch.chdir(tmp_path / "p")
    result = CliRunner().invoke(app, ["subscribers", "list"], env=_bare_env())
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p" / "subscribers" / "slice.db").is_file()


def test_a_database_named_in_the_environment_runs_without_slice_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment configured by environment alone (SLICE_DATABASE_URL) still runs."""
    monkeypatch.chdir(tmp_path)
    env = {**_bare_env(), "SLICE_DATABASE_URL": f"sqlite:///{tmp_path / 'list.db'}"}
    result = CliRunner().invoke(app, ["subscribers", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "list.db").is_file()
