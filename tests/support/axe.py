"""axe-core (npm, installed by .ci/run into .ci/node/) run inside a page of tests/support/browser.

`violations` injects axe into the open page and returns what it finds at the
given impacts, one readable line each (rule, impact, the elements, the help).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.browser import Browser

AXE_JS = (
    Path(__file__).resolve().parents[2]
    / ".ci"
    / "node"
    / "node_modules"
    / "axe-core"
    / "axe.min.js"
)
MISSING = f"axe-core is not installed ({AXE_JS} is missing; .ci/run installs it with npm)"
SEVERE = ("serious", "critical")


def available() -> bool:
    return AXE_JS.is_file()


def run_axe(browser: Browser) -> list[dict[str, Any]]:
    """axe's violations for the open page (WCAG 2.x A and AA rules, best practices)."""
    if not browser.js("typeof window.axe === 'object'"):
        browser.js(AXE_JS.read_text(encoding="utf-8") + ";0")
    options = {"resultTypes": ["violations"]}
    result = browser.js(
        f"axe.run(document, {json.dumps(options)}).then(r => r.violations.map(v => ({{"
        "id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary}))"
        "})))"
    )
    return list(result)


def violations(browser: Browser, impacts: tuple[str, ...] = SEVERE) -> list[str]:
    """One line per violation at ``impacts``: 'rule (impact): help: the elements'."""
    lines = []
    for found in run_axe(browser):
        if found["impact"] in impacts:
            targets = ", ".join(n["target"] for n in found["nodes"][:5])
            more = len(found["nodes"]) - 5
            lines.append(
                f"{found['id']} ({found['impact']}): {found['help']}: {targets}"
                + (f" and {more} more" if more > 0 else "")
            )
    return lines
