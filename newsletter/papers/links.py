"""Where a paper is read: one link per paper, the same in the email and the archive.

Every paper gets a link: its journal DOI, PubMed, PubMed Central, arXiv, the preprint
server's page, a stored URL, and last a title search at the place it came from (a
search is the only link a record without identifiers can have; compose warns about it).
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

from newsletter.core.models import Paper, PaperKind
from newsletter.papers.text import plain_text

_UNSAFE_URL = re.compile(r"[\s<>\"']")
_PREPRINT_SERVERS = {"medrxiv": "https://www.medrxiv.org", "biorxiv": "https://www.biorxiv.org"}


def doi_url(doi: str) -> str:
    return f"https://doi.org/{quote(doi, safe='/:;()._-')}"


def direct_link(paper: Paper) -> str:
    """The journal DOI for a paper, else PubMed, PMC, arXiv, the preprint server's page, the
    source's own page, or the DOI; "" if the record has none of them."""
    doi = (paper.doi or "").strip()
    if doi and paper.kind == PaperKind.PAPER.value:
        return doi_url(doi)
    if paper.pmid and paper.pmid.strip().isdigit():
        return f"https://pubmed.ncbi.nlm.nih.gov/{paper.pmid.strip()}/"
    pmcid = (paper.pmcid or "").strip().upper()
    if re.fullmatch(r"PMC\d+", pmcid):
        return f"https://pmc.ncbi.nlm.nih.gov/articles/{pmcid}/"
    if paper.arxiv_id:
        return f"https://arxiv.org/abs/{quote(paper.arxiv_id.strip(), safe='/.-')}"
    url = (paper.url or "").strip()
    if url.startswith(("https://", "http://")) and not _UNSAFE_URL.search(url):
        return url
    server = _PREPRINT_SERVERS.get(paper.source.lower())
    if doi and server:
        return f"{server}/content/{quote(doi, safe='/._-')}"
    if doi:
        return doi_url(doi)
    return ""


def has_direct_link(paper: Paper) -> bool:
    return bool(direct_link(paper))


def search_link(paper: Paper) -> str:
    """A title search where the paper most likely is: arXiv for arXiv, else PubMed."""
    title = " ".join(plain_text(paper.title).split())
    if paper.source.lower() == "arxiv":
        query = urlencode({"query": title, "searchtype": "title"})
        return f"https://arxiv.org/search/?{query}"
    server = _PREPRINT_SERVERS.get(paper.source.lower())
    if server:
        return f"{server}/search/{quote(title, safe='')}"
    return "https://pubmed.ncbi.nlm.nih.gov/?" + urlencode({"term": f"{title}[Title]"})


def paper_link(paper: Paper) -> str:
    """Where to read the paper: `direct_link`, or a title search when there is none."""
    return direct_link(paper) or search_link(paper)
