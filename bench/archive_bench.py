"""Archive search with 100,000 stored papers: the web page against the raw FTS query.

    .venv/bin/python bench/archive_bench.py [--papers 100000] [--rounds 15]

Fills a fresh SQLite project with invented papers (inserted with plain SQL, so
the FTS triggers index them as they would any writer's rows), starts the real
app on uvicorn on 127.0.0.1, and times GET /?q=... over loopback for 20 typical
queries. The baseline, measured in the same run on the same database, is the
bare FTS5 query (MATCH + bm25 ORDER BY + LIMIT 10, ids only) through sqlite3. Prints
p50/p95 per query and overall, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from newsletter.core.config import load_settings
from newsletter.core.project import init_project
from newsletter.core.store import Store
from newsletter.papers.searchquery import fts5_match, parse_query
from newsletter.web import create_app
from tests.support.liveserver import LiveServer

QUERIES = [
    "deep learning",
    "chest radiograph",
    "segmentation",
    "mammography screening",
    "brain MRI",
    "transformer",
    "federated learning",
    "lung nodule detection",
    "CT reconstruction",
    '"large language model"',
    "report generation",
    "ultrasound",
    "uncertainty calibration",
    "prostate MRI -biopsy",
    "stroke OR hemorrhage",
    "foundation model",
    "pneumothorax",
    "radiomics survival",
    "diffusion model denoising",
    "garcia",
]

WORDS = {
    "method": [
        "deep learning",
        "convolutional network",
        "transformer",
        "vision transformer",
        "foundation model",
        "large language model",
        "diffusion model",
        "federated learning",
        "self-supervised learning",
        "radiomics",
        "graph neural network",
        "contrastive learning",
        "ensemble",
        "U-Net",
        "gradient boosting",
    ],
    "task": [
        "segmentation",
        "detection",
        "classification",
        "report generation",
        "triage",
        "reconstruction",
        "denoising",
        "registration",
        "survival prediction",
        "calibration",
        "uncertainty estimation",
        "quality control",
        "dose reduction",
        "screening",
    ],
    "organ": [
        "chest radiograph",
        "lung nodule",
        "brain MRI",
        "prostate MRI",
        "mammography",
        "liver lesion",
        "cardiac CT",
        "knee MRI",
        "stroke",
        "intracranial hemorrhage",
        "pneumothorax",
        "breast ultrasound",
        "thyroid ultrasound",
        "colorectal polyp",
        "bone fracture",
        "pulmonary embolism",
    ],
    "filler": [
        "we",
        "propose",
        "a",
        "novel",
        "approach",
        "for",
        "the",
        "in",
        "patients",
        "cohort",
        "external",
        "validation",
        "multicentre",
        "retrospective",
        "prospective",
        "study",
        "results",
        "show",
        "improved",
        "performance",
        "compared",
        "with",
        "radiologists",
        "baseline",
        "area",
        "under",
        "curve",
        "sensitivity",
        "specificity",
        "dataset",
        "images",
        "trained",
        "evaluated",
        "on",
        "across",
        "sites",
        "scanners",
        "protocols",
        "clinical",
        "workflow",
        "reader",
    ],
}
SURNAMES = [
    "Garcia",
    "Smith",
    "Chen",
    "Wang",
    "Müller",
    "Rossi",
    "Kim",
    "Nguyen",
    "Silva",
    "Kowalski",
    "Ivanova",
    "Haddad",
    "Okafor",
    "Tanaka",
    "Dubois",
    "Jensen",
    "Novak",
    "Costa",
    "Singh",
    "Lopez",
    "Cohen",
    "Ahmed",
    "Brown",
    "Schmidt",
]


def invent(rng: random.Random, i: int) -> tuple[object, ...]:
    method, task, organ = (rng.choice(WORDS[k]) for k in ("method", "task", "organ"))
    title = f"{method.capitalize()} for {organ} {task}: a {rng.choice(['multicentre', 'retrospective', 'prospective'])} study"
    sentences = []
    for _ in range(rng.randint(6, 10)):
        words = rng.sample(WORDS["filler"], 12)
        words.insert(rng.randint(0, 12), rng.choice(WORDS[rng.choice(["method", "task", "organ"])]))
        sentences.append(" ".join(words).capitalize() + ".")
    authors = [
        f"{rng.choice('ABCDEFGHJKLMNPRST')}. {rng.choice(SURNAMES)}"
        for _ in range(rng.randint(2, 9))
    ]
    source = rng.choice(["arxiv", "pubmed", "medrxiv"])
    kind = "paper" if source == "pubmed" else "preprint"
    published = date(2023, 1, 1) + timedelta(days=rng.randrange(1000))
    return (
        title,
        json.dumps(authors),
        " ".join(sentences),
        source,
        kind,
        published.isoformat(),
        f"https://example.org/papers/{i}",
        "",
        f"10.5555/bench.{i}",
        title.lower(),
        "[]",
        "{}",
        "2025-01-01 00:00:00+00:00",
        "2025-01-01 00:00:00+00:00",
    )


def fill(db: Path, count: int) -> float:
    rng = random.Random(42)
    started = time.perf_counter()
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT INTO papers (title, authors, abstract, source, kind, published, url, journal, "
            "doi, title_key, seen_in, extra, first_seen, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (invent(rng, i) for i in range(count)),
        )
    conn.execute("PRAGMA optimize")
    conn.close()
    return time.perf_counter() - started


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15, help="timed requests per query")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="slice-bench-")) / "project"
    init_project(root, name="Bench Weekly")
    settings = load_settings(
        config=root / "slice.toml", environ={"SLICE_SECRET_KEY": secrets.token_urlsafe(32)}
    )
    store = Store.open(settings.database_url)
    db = Path(settings.database_url.removeprefix("sqlite:///"))
    print(f"filling {args.papers:,} papers into {db} ...", flush=True)
    took = fill(db, args.papers)
    print(f"  inserted and indexed in {took:.1f} s ({args.papers / took:,.0f} papers/s)")

    raw = sqlite3.connect(db)
    raw_sql = (
        "SELECT rowid FROM papers_fts WHERE papers_fts MATCH ? "
        "ORDER BY bm25(papers_fts, 10.0, 1.0, 4.0) LIMIT 10"
    )
    server = LiveServer(create_app(settings, store=store)).start()
    rows = []
    all_web: list[float] = []
    all_raw: list[float] = []
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for query in QUERIES:
                match = fts5_match(parse_query(query)[0])
                hits = raw.execute(
                    "SELECT count(*) FROM papers_fts WHERE papers_fts MATCH ?", (match,)
                ).fetchone()[0]
                client.get("/", params={"q": query})  # warm up
                raw.execute(raw_sql, (match,)).fetchall()
                web_times, raw_times = [], []
                for _ in range(args.rounds):
                    t0 = time.perf_counter()
                    response = client.get("/", params={"q": query})
                    web_times.append((time.perf_counter() - t0) * 1000)
                    assert response.status_code == 200, response.status_code
                    t0 = time.perf_counter()
                    raw.execute(raw_sql, (match,)).fetchall()
                    raw_times.append((time.perf_counter() - t0) * 1000)
                all_web += web_times
                all_raw += raw_times
                rows.append(
                    (
                        query,
                        hits,
                        statistics.median(web_times),
                        percentile(web_times, 95),
                        statistics.median(raw_times),
                        percentile(raw_times, 95),
                    )
                )
    finally:
        server.stop()
        store.dispose()
        raw.close()

    print(
        f"\n{'query':28} {'hits':>7}  {'GET p50':>8} {'GET p95':>8}  {'FTS p50':>8} {'FTS p95':>8}  ratio"
    )
    for query, hits, wp50, wp95, rp50, rp95 in rows:
        print(
            f"{query[:28]:28} {hits:>7,}  {wp50:>6.1f}ms {wp95:>6.1f}ms  {rp50:>6.2f}ms {rp95:>6.2f}ms  {wp50 / max(rp50, 1e-6):5.1f}x"
        )
    web50, web95 = statistics.median(all_web), percentile(all_web, 95)
    raw50, raw95 = statistics.median(all_raw), percentile(all_raw, 95)
    print(
        f"\nall {len(QUERIES)} queries x {args.rounds} rounds, {args.papers:,} papers:\n"
        f"  GET /?q=...  p50 {web50:.1f} ms  p95 {web95:.1f} ms\n"
        f"  raw FTS5     p50 {raw50:.2f} ms  p95 {raw95:.2f} ms   (baseline)\n"
        f"  ratio        p50 {web50 / raw50:.1f}x  p95 {web95 / raw95:.1f}x"
    )


if __name__ == "__main__":
    main()
