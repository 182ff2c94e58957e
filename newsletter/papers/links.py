"""Where a paper is read: one link per paper, the same in the email and the archive."""

from __future__ import annotations

import re
from urllib.parse import quote

from newsletter.core.models import Paper, PaperKind

_UNSAFE_URL = re.compile(r"[\s<>\"']")


def doi_url(doi: str) -> str:
    return f"https://doi.org/{quote(doi, safe='/:;()._-')}"


def paper_link(paper: Paper) -> str:
    """The journal DOI for a paper, else PubMed, arXiv, or the source's own page; "" if none."""
    doi = (paper.doi or "").strip()
    if doi and paper.kind == PaperKind.PAPER.value:
        return doi_url(doi)
    if paper.pmid and paper.pmid.strip().isdigit():
        return f"https://pubmed.ncbi.nlm.nih.gov/{paper.pmid.strip()}/"
    if paper.arxiv_id:
        return f"https://arxiv.org/abs/{quote(paper.arxiv_id.strip(), safe='/.-')}"
    url = (paper.url or "").strip()
    if url.startswith(("https://", "http://")) and not _UNSAFE_URL.search(url):
        return url
    if doi:
        return doi_url(doi)
    return ""
