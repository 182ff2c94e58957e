"""The repository stands on its own: a plain clone runs every test and installs what CI installs."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("tests", "bench")

# A path into the machine rather than into the repository: the shared samples, a home or
# work folder, a temporary folder named outright. Programs (/usr/bin/chromium) are not files read.
OUTSIDE = re.compile(
    r"""shared/samples|\.\./shared|\.\./\.\.|["']shared["']|ROOT\.parent\b|"""
    r"""["'](?:/(?:work|home|root|tmp|mnt|opt|srv|var|etc|data|shared)(?:/|["']))"""
)


def _python_files() -> list[Path]:
    files = [p for top in SCANNED for p in (ROOT / top).rglob("*.py")]
    this = Path(__file__).resolve()  # holds the bad examples its self-test needs
    return sorted(p for p in files if "fixtures" not in p.relative_to(ROOT).parts and p != this)


def _climbs(node: ast.AST) -> int | None:
    """How many folders `Path(__file__)...parent.parent` or `.parents[n]` goes up, if it is one."""
    ups = 0
    while True:
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            ups += 1
            node = node.value
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parents"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, int)
        ):
            ups += node.slice.value + 1
            node = node.value.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            node = node.func.value  # .resolve(), .absolute()
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            is_file = any(isinstance(a, ast.Name) and a.id == "__file__" for a in node.args)
            return ups if node.func.id == "Path" and is_file and ups else None
        else:
            return None


def test_no_test_reads_a_path_outside_the_repository() -> None:
    """A test that needs a file carries it in tests/fixtures; nothing reaches past the clone."""
    found = []
    for path in _python_files():
        rel = path.relative_to(ROOT)
        source = path.read_text(encoding="utf-8")
        for number, line in enumerate(source.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{rel}:{number}: {line.strip()}")
        depth = len(rel.parts)  # .parent this many times from the file is the repository root
        for node in ast.walk(ast.parse(source)):
            ups = _climbs(node)
            if ups is not None and ups > depth:
                found.append(
                    f"{rel}:{getattr(node, 'lineno', 0)}: goes {ups} folders up, past the repo"
                )
    assert not found, "paths outside the repository (copy what you need into tests/fixtures):\n" + (
        "\n".join(found)
    )


def test_the_outside_path_check_catches_what_it_should() -> None:
    """The check above, on the lines it exists for (it would pass vacuously if it matched nothing)."""
    bad = [
        'SAMPLES = ROOT.parent / "shared" / "samples"',
        'Path("/work/shared/samples/x.xml")',
        'open("../shared/x.json")',
        'Path("/home/me/data.csv")',
    ]
    good = ['client.get("/subscribe")', '["send", "../etc"]', '"/usr/bin/chromium"']
    assert [line for line in bad if not OUTSIDE.search(line)] == []
    assert [line for line in good if OUTSIDE.search(line)] == []
    climbing = ast.parse("Path(__file__).resolve().parent.parent.parent / 'shared'").body[0]
    assert isinstance(climbing, ast.Expr) and isinstance(climbing.value, ast.BinOp)
    assert _climbs(climbing.value.left) == 3  # past the root from tests/x.py (2 steps up)
    (parents,) = ast.parse("Path(__file__).parents[1]").body
    assert isinstance(parents, ast.Expr) and _climbs(parents.value) == 2


def _constraints() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"constraints.txt: {line!r} is not an exact pin (name==version)"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def test_constraints_pin_every_dependency_within_its_range() -> None:
    """CI installs with -c constraints.txt: each package pyproject names has one tested version,
    and that version is inside the range users get. Refresh with scripts/refresh-constraints."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    named = [*project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        named += extra
    pins = _constraints()
    problems = []
    for text in named:
        requirement = Requirement(text)
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement.name} is not pinned")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement.name}=={pinned} is outside {requirement.specifier}")
    assert problems == [], "constraints.txt: run scripts/refresh-constraints\n" + "\n".join(
        problems
    )


def test_ci_and_the_readme_install_with_the_constraints() -> None:
    command = "pip install -c constraints.txt -e '.[dev]'"
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8").replace(" -q", "")
    assert command in (ROOT / "README.md").read_text(encoding="utf-8")


GROUPS = ("core", "papers", "issue", "readers", "send", "web")


def test_each_group_says_what_it_owns() -> None:
    """Every module of a group is named in its __init__ docstring, the group's table of contents."""
    unnamed = []
    for group in GROUPS:
        folder = ROOT / "newsletter" / group
        tree = ast.parse((folder / "__init__.py").read_text(encoding="utf-8"))
        contents = ast.get_docstring(tree) or ""
        for module in sorted(folder.glob("*.py")):
            if module.stem != "__init__" and f"`{module.stem}`" not in contents:
                unnamed.append(f"newsletter/{group}/{module.name}")
    assert unnamed == [], "add a line for each to its group's __init__ docstring: " + ", ".join(
        unnamed
    )
