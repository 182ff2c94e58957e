"""Ingest throughput and peak memory for a 20,000-record PubMed efetch XML file.

    .venv/bin/python bench/ingest_bench.py [--records 20000] [--keep FILE] [--old-tree DIR]
        [--postgres postgresql://postgres@127.0.0.1:5432]

Writes a synthetic efetch file (structured abstracts, inline markup, MathML,
a CollectiveName, reference lists), then measures, each phase in a fresh
process so that peak memory (max RSS) is its own:

  lxml      the baseline: ``lxml.etree.fromstring`` of the same bytes (whole tree)
  parse     Slice's streaming parser (iterparse + clearing + text hygiene), no database
  ingest    ``slice ingest`` end to end: parse, validate, dedup, store in a new SQLite file
  reingest  the same file again into that database (every record unchanged)
  old       with ``--old-tree DIR`` (another checkout, e.g. made with
            `git archive <commit> | tar -x -C DIR`): its ingest of the same file into
            a new database, run right after this one's, for a same-load comparison

and prints records/s, peak RSS, the ratios against the lxml baseline, and the
longest write transaction of each ingest (how long other writers could wait).

With ``--postgres SERVER_URL`` the ingests store into PostgreSQL instead: each
ingest round gets a new database (``slice_ingest_bench_new`` or ``_old``, dropped
and made again), and reingest reuses the new one. The server's own CPU time (the
search index's trigger runs there) is not in the CPU column.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if not os.environ.get("PYTHONPATH"):  # a phase of --old-tree runs with that tree's code
    sys.path.insert(0, str(ROOT))

from common import peak_rss_mb, run_phase  # noqa: E402

MML = 'xmlns:mml="http://www.w3.org/1998/Math/MathML"'


def article(n: int) -> str:
    pmid = 30_000_000 + n
    math = (
        f"<mml:math {MML}><mml:msub><mml:mi>V</mml:mi><mml:mn>2</mml:mn></mml:msub></mml:math>"
        if n % 10 == 0
        else "V<sub>2</sub>"
    )
    collective = (
        "<Author><CollectiveName>Imaging Consortium</CollectiveName></Author>" if n % 7 == 0 else ""
    )
    refs = "".join(
        f'<Reference><Citation>Ref {r}.</Citation><ArticleIdList><ArticleId IdType="pubmed">{r}</ArticleId>'
        f'<ArticleId IdType="doi">10.9999/ref.{r}</ArticleId></ArticleIdList></Reference>'
        for r in range(n, n + 5)
    )
    return f"""<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="1">{pmid}</PMID>
<Article PubModel="Print-Electronic"><Journal><JournalIssue CitedMedium="Internet"><Volume>{n % 40}</Volume>
<PubDate><Year>2025</Year><Month>Jun</Month></PubDate></JournalIssue><Title>Journal of Imaging {n % 50}</Title>
</Journal><ArticleTitle>Deep learning study {n} of <i>in vivo</i> CT<sub>perfusion</sub> imaging.</ArticleTitle>
<Abstract><AbstractText Label="BACKGROUND">Imaging studies need automation; cohort {n} was drawn
from three hospitals with p &lt; 0.05 as threshold.</AbstractText>
<AbstractText Label="METHODS">We trained a network on {n % 900 + 100} scans and measured {math} uptake
in each region of interest.</AbstractText>
<AbstractText Label="RESULTS">The area under the curve was 0.9{n % 10} in external validation.</AbstractText>
<AbstractText Label="CONCLUSIONS">Automated reading is feasible.</AbstractText></Abstract>
<AuthorList CompleteYN="Y"><Author><LastName>Author{n}</LastName><ForeName>Ann</ForeName></Author>
<Author><LastName>Second{n % 300}</LastName><ForeName>Bo K</ForeName></Author>{collective}</AuthorList>
<PublicationTypeList><PublicationType UI="D016428">Journal Article</PublicationType></PublicationTypeList>
<ArticleDate DateType="Electronic"><Year>2025</Year><Month>06</Month><Day>{n % 28 + 1:02d}</Day></ArticleDate>
</Article></MedlineCitation><PubmedData><History><PubMedPubDate PubStatus="entrez"><Year>2025</Year>
<Month>6</Month><Day>{n % 28 + 1}</Day></PubMedPubDate></History><ArticleIdList>
<ArticleId IdType="pubmed">{pmid}</ArticleId><ArticleId IdType="doi">10.5555/bench.{n}</ArticleId>
</ArticleIdList><ReferenceList>{refs}</ReferenceList></PubmedData></PubmedArticle>
"""


def write_file(path: Path, records: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0" ?>\n<PubmedArticleSet>\n')
        for n in range(records):
            fh.write(article(n))
        fh.write("</PubmedArticleSet>\n")


def postgres_url(server: str, name: str) -> str:
    """The URL of database ``name`` on the PostgreSQL ``server``."""
    from sqlalchemy.engine import make_url

    url = make_url(server).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def fresh_postgres(server: str, name: str) -> str:
    """A new, empty PostgreSQL database ``name`` on ``server``; its URL."""
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url(server, "postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return postgres_url(server, name)


def phase(name: str, path: Path, db: Path, url: str | None = None) -> dict[str, float]:
    """Run one phase in this process; the figures as a dict."""
    from lxml import etree

    start_rss = peak_rss_mb(children=True)
    longest: float | None = None
    data = path.read_bytes() if name == "lxml" else b""
    start = time.perf_counter()
    if name == "lxml":
        root = etree.fromstring(data)
        count = sum(1 for _ in root.iterchildren("PubmedArticle"))
    elif name == "parse":
        from newsletter.papers.sources.pubmed import iter_articles

        with path.open("rb") as fh:
            count = sum(1 for _ in iter_articles(fh))
    else:
        from newsletter.core.store import Store
        from newsletter.papers.ingest import ingest_files

        with Store.open(url or f"sqlite:///{db}") as store:
            (result,) = ingest_files(store, [path])
            assert result.error is None, result.error
            count = result.fetched
            if name in ("ingest", "old"):
                assert result.new == count, result
            else:
                assert result.unchanged == count, result
            longest = getattr(result, "longest_write_ms", None)
    seconds = time.perf_counter() - start
    if longest is None and name in ("ingest", "reingest", "old"):
        longest = seconds * 1000  # older code: the whole file was one write transaction
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the read-ahead parser
    return {
        "records": count,
        "seconds": seconds,
        "cpu_parent": own.ru_utime + own.ru_stime,
        "cpu_child": kids.ru_utime + kids.ru_stime,
        "peak_rss_mb": peak_rss_mb(children=True),
        "start_rss_mb": start_rss,
        "longest_write_ms": longest if longest is not None else -1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--keep", type=Path, help="Write the generated XML here and keep it.")
    parser.add_argument("--old-tree", type=Path, help="A checkout of the code to compare with.")
    parser.add_argument(
        "--rounds", type=int, default=1, help="Run ingest (and old) this many times, alternating."
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--postgres", help="Store into PostgreSQL on this server (postgresql://user@host:port)."
    )
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.file, args.db, args.db_url)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "pubmed_bench.xml"
        db = Path(tmp) / "ingest.db"
        t0 = time.perf_counter()
        write_file(path, args.records)
        size_mb = path.stat().st_size / 1e6
        print(
            f"generated {args.records} PubMed records, {size_mb:.1f} MB, in {time.perf_counter() - t0:.1f}s"
        )
        figures: dict[str, dict[str, float]] = {}
        phases = ["lxml", "parse"]
        for _ in range(args.rounds):  # alternating, so both meet the same machine load
            phases += ["ingest", "old"] if args.old_tree else ["ingest"]
        phases.append("reingest")
        for name in phases:
            tree = args.old_tree.resolve() if name == "old" else ROOT
            target = Path(tmp) / ("old.db" if name == "old" else "ingest.db")
            if name != "reingest":  # each ingest round starts from an empty database
                for leftover in Path(tmp).glob(target.name + "*"):
                    leftover.unlink()
            where = ["--db", str(target)]
            if args.postgres and name in ("ingest", "old", "reingest"):
                database = "slice_ingest_bench_" + ("old" if name == "old" else "new")
                if name == "reingest":
                    where += ["--db-url", postgres_url(args.postgres, database)]
                else:
                    where += ["--db-url", fresh_postgres(args.postgres, database)]
            fig = run_phase(__file__, tree, name, "--file", str(path), *where)
            if name not in figures or fig["seconds"] < figures[name]["seconds"]:
                figures[name] = fig  # the best round of each
        base = figures["lxml"]
        print(
            f"\n{'phase':<10} {'records':>8} {'seconds':>8} {'records/s':>10} {'peak RSS MB':>12} "
            f"{'time x lxml':>12} {'RSS x lxml':>11} {'longest write ms':>17} "
            f"{'CPU s (parent+child)':>21}"
        )
        for name, fig in figures.items():
            rate = fig["records"] / fig["seconds"]
            longest = fig.get("longest_write_ms", -1)
            print(
                f"{name:<10} {int(fig['records']):>8} {fig['seconds']:>8.2f} {rate:>10.0f} "
                f"{fig['peak_rss_mb']:>12.0f} {fig['seconds'] / base['seconds']:>12.1f} "
                f"{fig['peak_rss_mb'] / base['peak_rss_mb']:>11.2f} "
                f"{(f'{longest:.0f}' if longest >= 0 else '-'):>17} "
                f"{fig['cpu_parent']:>11.1f}+{fig['cpu_child']:<9.1f}"
            )
        if "old" in figures:
            speedup = figures["old"]["seconds"] / figures["ingest"]["seconds"]
            print(f"\ningest vs the old tree's ingest, same file, same run: {speedup:.2f}x faster")
            old, new = figures["old"], figures["ingest"]
            print(
                f"CPU: old {old['cpu_parent']:.1f} s in one process; new {new['cpu_parent']:.1f} s "
                f"storing + {new['cpu_child']:.1f} s parsing alongside (the longer of the two "
                f"bounds the time on an idle 2-core machine: "
                f"{old['cpu_parent'] / max(new['cpu_parent'], new['cpu_child']):.2f}x)"
            )
        print(
            f"\npython + imports alone: ~{min(f['start_rss_mb'] for f in figures.values()):.0f} MB RSS; "
            + (f"database after ingest: {db.stat().st_size / 1e6:.1f} MB" if db.exists() else "")
        )


if __name__ == "__main__":
    main()
