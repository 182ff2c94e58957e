"""issue.json from a selection, and what the editor did to it.

A fresh compose lists the selection's chosen papers (`fresh_issue`); a kept issue.json
keeps the editor's edits and takes this run's --pin and --exclude (`apply_overrides`).
`choices_of` reads back what the editor pinned, kept and removed, for the learning history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from newsletter.issue.issuefile import IssueFile, PaperEntry, WindowDates
from newsletter.issue.scoring import PaperText
from newsletter.issue.select import Selection
from newsletter.issue.window import Window
from newsletter.papers.text import plain_text


def _entry(paper: PaperText, score: float, *, featured: bool) -> PaperEntry:
    assert paper.id is not None
    return PaperEntry(
        id=paper.id, score=round(score, 3), title=plain_text(paper.title)[:200], featured=featured
    )


def fresh_issue(
    selection: Selection,
    *,
    excludes: Sequence[int],
    issue_id: str,
    number: int,
    featured: int,
    window: Window,
    pins: Sequence[int],
) -> IssueFile:
    return IssueFile(
        id=issue_id,
        number=number,
        date=window.end + timedelta(days=1),
        window=WindowDates(start=window.start, end=window.end),
        papers=[
            _entry(s.paper, s.score, featured=i < featured) for i, s in enumerate(selection.chosen)
        ],
        pinned=list(dict.fromkeys(pins)),
        excluded=list(dict.fromkeys(excludes)),
        proposed=[s.paper_id for s in selection.chosen if s.status == "selected"],
    )


def apply_overrides(
    issue: IssueFile,
    selection: Selection,
    *,
    pins: Sequence[int],
    excludes: Sequence[int],
    max_papers: int,
) -> IssueFile:
    """Keep the editor's issue.json and apply this run's --pin and --exclude."""
    by_id = {s.paper_id: s for s in selection.ranked}
    papers = [p for p in issue.papers if p.id not in set(excludes)]
    present = {p.id for p in papers}
    for pid in pins:
        if pid in present:
            continue
        scored = by_id.get(pid)
        score = scored.score if scored else 0.0
        at = next(
            (i for i, p in enumerate(papers) if not p.featured and p.score < score), len(papers)
        )
        if scored is not None:
            entry = _entry(scored.paper, score, featured=False)
        else:
            entry = PaperEntry(id=pid, score=0.0)
        papers.insert(at, entry)
        present.add(pid)
    if excludes:
        # fill the freed places with the next papers of the ranking
        excluded = set(issue.excluded) | set(excludes)
        for s in selection.ranked:
            if len(papers) >= max_papers:
                break
            if s.status in ("selected", "below") and s.paper_id not in present | excluded:
                papers.append(_entry(s.paper, s.score, featured=False))
                present.add(s.paper_id)
    return issue.model_copy(
        update={
            "papers": papers,
            "pinned": list(dict.fromkeys([*(p for p in issue.pinned if p not in excludes), *pins])),
            "excluded": list(
                dict.fromkeys([*(e for e in issue.excluded if e not in pins), *excludes])
            ),
        }
    )


def choices_of(issue: IssueFile, selection: Selection) -> dict[int, str]:
    """What the editor did in this issue, for the learning history."""
    listed = [p.id for p in issue.papers]
    proposed = set(issue.proposed)
    out: dict[int, str] = {}
    chosen = {s.paper_id for s in selection.chosen}
    for s in selection.ranked[: len(chosen) + 20]:
        if s.paper_id not in chosen and s.status in ("below", "capped", "unmatched"):
            out[s.paper_id] = "passed"
    for pid in proposed:
        if pid not in listed:
            out[pid] = "excluded"
    for pid in issue.excluded:
        out[pid] = "excluded"
    for pid in listed:
        out[pid] = "pinned" if (pid in issue.pinned or pid not in proposed) else "kept"
    return out
