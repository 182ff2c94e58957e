"""Build the fixed issue behind the compose golden files, and (run as a module) rewrite them.

    .venv/bin/python -m tests.regen_golden      # rewrites tests/golden/compose/*

Review the diff (and open tests/golden/compose/email.html in a browser) before committing.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from newsletter.core.project import init_project
from newsletter.core.store import Store
from newsletter.issue.compose import compose_issue
from newsletter.issue.window import week_window
from tests.composedata import NOW, WEEK, add_papers, project_settings

GOLDEN = Path(__file__).parent / "golden" / "compose"
FILES = ("email.html", "issue.txt", "issue.html", "issue.json", "message.json")

EDITS = {
    "intro": "Screening AI had a big week: a prospective mammography trial and a lung nodule "
    "model that cuts false positives.\n\nWhich of these do you expect in your reading room first?",
    "editor_note": "Thanks for reading. Reply to this email with papers we missed.",
    "first": {
        "headline": "A foundation model reads chest X-rays with 1% of the labels",
        "why_it_matters": "Labelled data is the bottleneck for most imaging AI projects.",
        "details": [
            "Pretrained on 1.2 million radiographs without labels",
            "Matches radiologists on 14 findings",
            "Weights and code are public",
        ],
        "takeaway": "Expect fine-tuned chest X-ray tools built on shared foundation models.",
    },
    "items": [
        {"kind": "dataset", "title": "CT-RATE 2", "url": "https://example.org/ct-rate-2",
         "text": "50,000 chest CT volumes with reports."},
        {"kind": "device", "title": "LungScan AI", "source": "FDA 510(k)",
         "url": "https://example.org/lungscan", "text": "Nodule triage on low-dose CT."},
    ],
}  # fmt: skip


def build(workdir: Path) -> dict[str, str]:
    """Compose the golden issue in ``workdir``; returns each file's text."""
    project = workdir / "project"
    init_project(project, name="Golden")
    settings = project_settings(project, {"SLICE_SECRET_KEY": "golden-secret-key-0123456789"})
    with Store.open(settings.database_url) as store:
        add_papers(store)
        window = week_window(WEEK)
        first = compose_issue(settings, store, window=window, now=NOW)
        issue = json.loads(first.folder.selection.read_text(encoding="utf-8"))
        issue["intro"] = EDITS["intro"]
        issue["editor_note"] = EDITS["editor_note"]
        issue["papers"][0].update(EDITS["first"])
        issue["items"] = EDITS["items"]
        first.folder.selection.write_text(json.dumps(issue, indent=2), encoding="utf-8")
        result = compose_issue(settings, store, window=window, now=NOW)
    return {name: (result.folder.root / name).read_text(encoding="utf-8") for name in FILES}


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in build(Path(tmp)).items():
            (GOLDEN / name).write_text(text, encoding="utf-8")
            print(f"wrote {GOLDEN / name} ({len(text.encode())} bytes)")


if __name__ == "__main__":
    main()
