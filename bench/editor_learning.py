"""Compose at scale, and whether the editor model still helps (run by compose_bench.py).

`scale`: a store with ``papers`` realistic papers in one week and ``weeks`` weeks of
sent issues with the editor's choices on record; times `compose_issue` against the
plain read of the week (`load_candidates`, the baseline) and against a plain read with
every candidate scored in full (what compose did before), all in the same run, and
checks that they choose the same issue. Also the old paths the bench measured before:
reading the week through the ORM, and 200 full-batch epochs of the editor model.

`learning`: a simulated editor who likes breast imaging and dislikes LLM report
generation pins and removes papers week after week; on the last 8 weeks (held back:
the model never saw them) precision@10 of the selection with and without the model.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from realistic import Generator
from sqlalchemy import insert
from sqlmodel import col, select

from newsletter.core.config import load_settings
from newsletter.core.models import Issue, Paper, issue_choices, table
from newsletter.core.project import init_project
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue import relevance
from newsletter.issue.candidates import load_candidates
from newsletter.issue.choices import (
    HALF_LIFE,
    HISTORY_ISSUES,
    WEIGHTS,
    Choice,
    EditorModel,
    training_set,
)
from newsletter.issue.compose import compose_issue
from newsletter.issue.scoring import Profile, text_tokens
from newsletter.issue.select import SelectOptions
from newsletter.issue.select import select as select_papers
from newsletter.issue.window import Window

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
WEEK = Window(date(2026, 5, 25), date(2026, 5, 31))


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _old_train(choices: Sequence[Choice], epochs: int = 200) -> None:
    """The model as it was trained before: 200 full-batch epochs over every past choice."""
    df: Counter[str] = Counter()
    for c in choices:
        df.update(set(c.words))
    n = len(choices)
    idf = {w: math.log((1 + n) / (1 + d)) + 1 for w, d in df.items()}
    xs = [EditorModel.features(c.words, idf) for c in choices]
    total = sum(c.weight for c in choices)
    coef: dict[str, float] = {}
    bias = 0.0
    for _ in range(epochs):
        grad: dict[str, float] = {}
        grad_bias = 0.0
        for x, c in zip(xs, choices, strict=True):
            z = bias + sum(coef.get(k, 0.0) * v for k, v in x.items())
            err = (1 / (1 + math.exp(-max(-30, min(30, z)))) - c.wanted) * c.weight / total
            grad_bias += err
            for k, v in x.items():
                grad[k] = grad.get(k, 0.0) + err * v
        for k in set(grad) | set(coef):
            coef[k] = coef.get(k, 0.0) - 0.5 * (grad.get(k, 0.0) + 0.02 * coef.get(k, 0.0))
        bias -= 0.5 * grad_bias


@dataclass
class Row:
    """A candidate as selection reads it."""

    id: int
    title: str
    abstract: str
    source: str
    published: date
    taste: float
    published_version_id: int | None = None


def _week_choices(rows: list[Row], profile: Profile) -> tuple[dict[int, str], set[int]]:
    """What the simulated editor does with a week: the profile proposes, the editor edits."""
    window = Window(min(r.published for r in rows), max(r.published for r in rows))
    sel = select_papers(
        rows, window, profile, options=SelectOptions(max_papers=10, per_source_cap=10)
    )
    proposed = [s.paper_id for s in sel.chosen]
    taste = {r.id: r.taste for r in rows}
    true = {
        s.paper_id
        for s in sorted(sel.ranked, key=lambda s: -(s.score + taste[s.paper_id]))[:10]
        if s.score + taste[s.paper_id] > 0
    }
    out: dict[int, str] = {}
    for s in sel.ranked[:30]:
        if s.paper_id not in proposed and s.paper_id not in true:
            out[s.paper_id] = "passed"
    for pid in proposed:
        out[pid] = "kept" if pid in true else "excluded"
    for pid in true - set(proposed):
        out[pid] = "pinned"
    return out, true


def learning(weeks: int = 104, per_week: int = 40, held_back: int = 8) -> None:
    gen = Generator(11)
    profile = relevance.profile_of(load_settings(config=ROOT / "slice.toml", environ={}))
    history: list[list[Choice]] = []
    results: list[tuple[float, float, float]] = []
    next_id = 1
    for week in range(weeks + held_back):
        day = date(2024, 1, 1) + timedelta(weeks=week)
        rows = []
        for i in range(per_week):
            fake = gen.paper(imaging=i % 5 != 0)
            rows.append(Row(next_id, fake.title, fake.abstract, fake.source, day, fake.taste))
            next_id += 1
        made, true = _week_choices(rows, profile)
        by_id = {r.id: r for r in rows}
        if week >= weeks:  # held back: train on what came before, then choose
            examples = []
            for age, past in enumerate(reversed(history[-HISTORY_ISSUES:])):
                decay = 0.5 ** (age / HALF_LIFE)
                examples += [Choice(c.words, c.wanted, c.weight * decay) for c in past]
            start = time.perf_counter()
            model = EditorModel.train(examples)
            took = _ms(start)
            window = Window(day, day)
            opts = SelectOptions(max_papers=10, per_source_cap=10)
            plain = {s.paper_id for s in select_papers(rows, window, profile, options=opts).chosen}
            taught = {
                s.paper_id
                for s in select_papers(rows, window, profile, options=opts, editor=model).chosen
            }
            results.append((len(plain & true) / 10, len(taught & true) / 10, took))
        history.append(
            [
                Choice(
                    text_tokens(by_id[pid].title, by_id[pid].abstract),
                    choice in ("pinned", "kept"),
                    WEIGHTS[choice],
                )
                for pid, choice in made.items()
            ]
        )
    without = statistics.mean(r[0] for r in results)
    with_model = statistics.mean(r[1] for r in results)
    train_ms = statistics.median(r[2] for r in results)
    print(f"learning: {weeks} weeks of choices, precision@10 on {held_back} held-back weeks: "
          f"without the model {without:.2f}, with it {with_model:.2f} "
          f"({with_model - without:+.2f}); training on the bounded history p50 {train_ms:.0f} ms")  # fmt: skip


def build_store(
    project: Path, papers: int = 10_000, weeks: int = 104, per_week: int = 30
) -> Settings:
    """A project with ``papers`` realistic papers in `WEEK` and ``weeks`` sent issues before it,
    ``per_week`` recorded editor choices each; the store is not scored yet."""
    gen = Generator(5)
    init_project(project, name="Bench")
    toml = (ROOT / "slice.toml").read_text(encoding="utf-8")
    (project / "slice.toml").write_text(toml.split("[[sources]]")[0], encoding="utf-8")
    settings = load_settings(
        config=project / "slice.toml", environ={"SLICE_SECRET_KEY": "bench-secret-key-0123"}
    )
    P = table(Paper)
    I = table(Issue)  # noqa: E741
    seen = datetime(2026, 5, 27, tzinfo=UTC)
    with Store.open(settings.database_url) as store:
        rows = []
        for i in range(papers):
            fake = gen.paper()
            rows.append({"title": fake.title, "abstract": fake.abstract, "source": fake.source,
                         "kind": "preprint", "published": WEEK.start + timedelta(days=i % 7),
                         "authors": gen.authors(), "url": "", "journal": "", "title_key": "",
                         "seen_in": [], "extra": {}, "first_seen": seen, "updated_at": seen})  # fmt: skip
        history_rows = []
        for week in range(weeks):
            day = WEEK.start - timedelta(weeks=weeks - week)
            for _ in range(per_week):
                fake = gen.paper()
                history_rows.append({**rows[0], "title": fake.title, "abstract": fake.abstract,
                                     "published": day})  # fmt: skip
        with store.write() as session:
            conn = session.connection()
            conn.execute(insert(P), rows + history_rows)
            ids = [int(r[0]) for r in conn.execute(select(P.c.id).order_by(P.c.id))]
            hist_ids = ids[papers:]
            choice_rows = []
            for week in range(weeks):
                day = WEEK.start - timedelta(weeks=weeks - week)
                issue_id = f"w{week:03d}"
                conn.execute(insert(I).values(id=issue_id, number=week + 1, subject="",
                                              window_start=day, window_end=day + timedelta(days=6),
                                              status="sent", composed_at=seen))  # fmt: skip
                for j, pid in enumerate(hist_ids[week * per_week : (week + 1) * per_week]):
                    choice = ("pinned", "excluded", "kept", "kept", "passed", "passed")[j % 6]
                    choice_rows.append({"issue_id": issue_id, "paper_id": pid,
                                        "choice": choice, "recorded_at": seen})  # fmt: skip
            conn.execute(insert(issue_choices), choice_rows)
    return settings


def scale(papers: int = 10_000, weeks: int = 104, per_week: int = 30) -> None:
    """Compose at ``papers`` candidates against the plain read of the week (the baseline) and
    a plain read plus every candidate scored in full, all in this run."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = build_store(Path(tmp) / "project", papers, weeks, per_week)
        with Store.open(settings.database_url) as store:
            start = time.perf_counter()
            scored = relevance.refresh_store(settings, store)  # what `slice fetch` does
            refresh_ms = _ms(start)

            with store.read() as session:
                start = time.perf_counter()
                orm = list(
                    session.exec(
                        select(Paper).where(col(Paper.published).between(WEEK.start, WEEK.end))
                    )
                )
                orm_ms = _ms(start)
                plain_ms, plain = _best(lambda: load_candidates(session, WEEK))
                profile = relevance.profile_of(settings)
                stats = relevance.load_stats(session.connection(), profile)
                examples = training_set(session, except_issue="none")
            assert len(orm) == len(plain) == papers
            start = time.perf_counter()
            model = EditorModel.train(examples)
            new_train_ms = _ms(start)
            every = [Choice(c.words, c.wanted, WEIGHTS["kept"]) for c in examples[:600]]
            start = time.perf_counter()
            _old_train(every)
            old_train_ms = _ms(start)

            options = SelectOptions(
                max_papers=settings.compose.max_papers,
                per_source_cap=settings.compose.per_source_cap,
                editor_weight=settings.profile.editor_weight,
                every=True,
            )

            def read_and_score_all() -> set[int]:
                with store.read() as session:
                    week = load_candidates(session, WEEK)
                sel = select_papers(week, WEEK, profile, options=options, editor=model, stats=stats)
                return {s.paper_id for s in sel.chosen}

            full_ms, full_chosen = _best(read_and_score_all, rounds=2)

            now = datetime(2026, 6, 1, 7, tzinfo=UTC)
            samples = []
            for _ in range(4):
                start = time.perf_counter()
                result = compose_issue(settings, store, window=WEEK, now=now, reselect=True)
                samples.append(_ms(start))
            first_ms, compose_ms = samples[0], min(samples[1:])
            start = time.perf_counter()
            explained = compose_issue(
                settings, store, window=WEEK, now=now, reselect=True, explain=True
            )
            explain_ms = _ms(start)
    same = (
        {p.id for p in result.issue.papers} == full_chosen == {p.id for p in explained.issue.papers}
    )
    print(f"scale: {papers:,} papers in the week, {weeks} weeks x {per_week} choices on record")
    print(f"  scoring the store once after ingest (relevance.refresh_store, {scored:,} papers): "
          f"{refresh_ms:.0f} ms ({refresh_ms / scored:.2f} ms a paper)")  # fmt: skip
    print(f"  read the week: ORM objects {orm_ms:.0f} ms, plain rows {plain_ms:.0f} ms "
          f"(the baseline below)")  # fmt: skip
    print(f"  plain read + every candidate scored in full (BM25, editor model): {full_ms:.0f} ms "
          f"({full_ms / plain_ms:.1f}x the plain read)")  # fmt: skip
    print(f"  whole compose_issue: first (trains the model) {first_ms:.0f} ms; again (model "
          f"cached by its history) best of 3 {compose_ms:.0f} ms = {compose_ms / plain_ms:.1f}x "
          f"the plain read; {result.selection.scored_in_full:,} of {papers:,} candidates read "
          f"in full; {len(result.issue.papers)} papers chosen, learned from "
          f"{result.selection.learned_from} choices")  # fmt: skip
    print(f"  compose --explain (every candidate scored in full): {explain_ms:.0f} ms; "
          f"same issue as scoring every candidate: {'yes' if same else 'NO'}")  # fmt: skip
    print(f"  editor model: old full-batch, 600 choices {old_train_ms:.0f} ms; "
          f"SGD on the bounded history ({len(examples)} choices, {HISTORY_ISSUES} issues) "
          f"{new_train_ms:.0f} ms ({old_train_ms / new_train_ms:.0f}x faster)")  # fmt: skip


def _best(fn: Callable[[], T], rounds: int = 3) -> tuple[float, T]:
    """The fastest of ``rounds`` runs (ms) and the last result: load comes and goes."""
    best = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        out = fn()
        best = min(best, _ms(start))
    return best, out
