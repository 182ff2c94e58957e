"""Big inputs made on the spot (never stored in the repository): PubMed files, CSV lists."""

from __future__ import annotations

from pathlib import Path


def _article(n: int) -> str:
    pmid = 30_000_000 + n
    return (
        f'<PubmedArticle><MedlineCitation Status="MEDLINE"><PMID Version="1">{pmid}</PMID>'
        f"<Article><Journal><JournalIssue><PubDate><Year>2025</Year><Month>Jun</Month></PubDate>"
        f"</JournalIssue><Title>Journal of Imaging {n % 50}</Title></Journal>"
        f"<ArticleTitle>Deep learning study {n} of <i>in vivo</i> CT perfusion imaging.</ArticleTitle>"
        f'<Abstract><AbstractText Label="METHODS">We trained a network on {n % 900 + 100} scans '
        f'from cohort {n}.</AbstractText><AbstractText Label="RESULTS">The AUC was '
        f"0.9{n % 10}.</AbstractText></Abstract>"
        f"<AuthorList><Author><LastName>Author{n}</LastName><ForeName>Ann</ForeName></Author>"
        f"<Author><LastName>Second{n % 300}</LastName><ForeName>Bo</ForeName></Author></AuthorList>"
        f'<ArticleDate DateType="Electronic"><Year>2025</Year><Month>06</Month>'
        f"<Day>{n % 28 + 1:02d}</Day></ArticleDate></Article></MedlineCitation>"
        f'<PubmedData><ArticleIdList><ArticleId IdType="pubmed">{pmid}</ArticleId>'
        f'<ArticleId IdType="doi">10.5555/load.{n}</ArticleId></ArticleIdList></PubmedData>'
        f"</PubmedArticle>\n"
    )


def pubmed_file(path: Path, records: int) -> Path:
    """A PubMed efetch XML file of ``records`` distinct articles."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0" ?>\n<PubmedArticleSet>\n')
        for n in range(records):
            fh.write(_article(n))
        fh.write("</PubmedArticleSet>\n")
    return path
