"""Compose: the MJML pipeline against bare mjml-python, and selection at scale.

    .venv/bin/python bench/compose_bench.py [--rounds 50] [--candidates 2000]

1. Renders a 10-paper issue (full abstracts) once to capture its MJML, then times
   `render_mjml` (lint + compile + inline) against the baseline measured in the same
   run: bare `mjml2html(fonts={})`. Also compiles the same MJML and runs premailer
   with its defaults, to show what the configured inliner avoids (size growth, lost
   doctype and !important).
2. Times selection (BM25 over title + abstract) of `--candidates` invented papers,
   and training the editor model on 300 past choices.
3. Times one whole `compose_issue` (store read, select, render, atomic write).
4. `bench/editor_learning.py`: compose with ``--papers`` (10,000) realistic papers in one
   week and ``--weeks`` (104) weeks of the editor's choices on record, against the plain
   read of the week (the baseline) and a plain read with every candidate scored in full,
   measured in the same run; then the editor model's precision@10 on held-back weeks,
   with and without it.
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from editor_learning import learning, scale
from mjml import mjml2html
from premailer import Premailer
from realistic import Generator

import newsletter.issue.render as render_module
from newsletter.core.config import load_settings
from newsletter.core.models import Paper
from newsletter.core.project import init_project
from newsletter.core.store import Store
from newsletter.issue import relevance
from newsletter.issue.choices import Choice, EditorModel
from newsletter.issue.compose import compose_issue
from newsletter.issue.htmlmail import render_mjml
from newsletter.issue.scoring import tokens
from newsletter.issue.select import SelectOptions, select
from newsletter.issue.window import week_window
from tests.composedata import WEEK, add_papers, project_settings
from tests.test_compose_render import ten_papers

ROOT = Path(__file__).resolve().parents[1]


def timed(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--candidates", type=int, default=2000)
    parser.add_argument("--papers", type=int, default=10_000, help="papers in the scale week")
    parser.add_argument("--weeks", type=int, default=104, help="weeks of editor choices")
    parser.add_argument("--skip-scale", action="store_true", help="only the MJML part")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        init_project(project, name="Bench")
        settings = project_settings(project, {"SLICE_SECRET_KEY": "bench-secret-key-0123456789"})
        settings.compose.max_papers = settings.compose.per_source_cap = 10
        settings.compose.abstract_chars = 3000
        captured: list[str] = []
        original: Callable[[str], str] = vars(render_module)["render_mjml"]

        def capture(source: str) -> str:
            captured.append(source)
            return original(source)

        vars(render_module)["render_mjml"] = capture
        with Store.open(settings.database_url) as store:
            add_papers(store, ten_papers())
            now = datetime(2026, 6, 1, tzinfo=UTC)
            window = week_window(WEEK)
            result = compose_issue(settings, store, window=window, now=now)
            vars(render_module)["render_mjml"] = original
            compose_ms = timed(
                lambda: compose_issue(settings, store, window=window, now=now),
                max(5, args.rounds // 5),
            )
        source = captured[0]

    print(f"10-paper issue, full abstracts: email.html {result.sizes['email.html']:,} bytes "
          f"({result.sizes['email.html'] / 1024:.1f} KB; Gmail clips at 102 KB)")  # fmt: skip
    base = timed(lambda: mjml2html(source, fonts={}), args.rounds)
    ours = timed(lambda: render_mjml(source), args.rounds)
    print(f"bare mjml2html:        p50 {base[0]:7.2f} ms  p95 {base[1]:7.2f} ms   (baseline)")
    print(f"render_mjml (lint+compile+inline): p50 {ours[0]:7.2f} ms  p95 {ours[1]:7.2f} ms   "
          f"ratio {ours[0] / base[0]:.1f}x")  # fmt: skip

    compiled = mjml2html(source, fonts={})
    mine = render_mjml(source)
    default = Premailer(
        compiled, allow_network=False, cssutils_logging_level=logging.CRITICAL
    ).transform()
    print(f"size: compiled {len(compiled):,} B; ours {len(mine):,} B ({len(mine) / len(compiled) - 1:+.1%}); "
          f"premailer defaults {len(default):,} B ({len(default) / len(compiled) - 1:+.1%})")  # fmt: skip
    rule = re.compile(
        r"@media only screen and \(min-width:480px\) \{ \.mj-column-per-100 \{ width:100% !important"
    )
    print(f"premailer defaults keep: lowercase doctype {default.startswith('<!doctype html>')}, "
          f"media-query !important {bool(rule.search(default))}; "
          f"ours: {mine.startswith('<!doctype html>')}, {bool(rule.search(mine))}")  # fmt: skip

    gen = Generator(7)
    papers = []
    for i in range(1, args.candidates + 1):
        fake = gen.paper()
        papers.append(Paper(id=i, title=fake.title, abstract=fake.abstract, source=fake.source,
                            published=date(2026, 5, 25 + i % 7)))  # fmt: skip
    vocabulary = {w for p in papers for w in tokens(p.title + " " + p.abstract)}
    profile = relevance.profile_of(load_settings(config=ROOT / "slice.toml", environ={}))
    sel = timed(lambda: select(papers, week_window(WEEK), profile, options=SelectOptions()), 5)
    print(f"select {args.candidates} realistic candidates ({len(vocabulary):,}-word vocabulary, "
          f"{len(profile.terms)} profile terms): p50 {sel[0]:.0f} ms")  # fmt: skip
    history = [
        Choice(tokens(p.title + " " + p.abstract), i % 3 == 0, 2.0)
        for i, p in enumerate(papers[:300])
    ]
    train = timed(lambda: EditorModel.train(history), 3)
    print(f"train editor model on 300 choices: p50 {train[0]:.0f} ms")
    print(
        f"whole compose_issue (10 papers, SQLite): p50 {compose_ms[0]:.1f} ms  p95 {compose_ms[1]:.1f} ms"
    )

    if not args.skip_scale:
        scale(papers=args.papers, weeks=args.weeks)
        learning(weeks=args.weeks)


if __name__ == "__main__":
    main()
