"""The file formats `slice ingest` reads, by the name ``--format`` takes.

A module of its own that imports nothing, so the command's help can list them
without loading the parsers.
"""

FORMATS = {
    "arxiv": "arXiv API Atom",
    "arxiv-rss": "arXiv RSS/Atom feed",
    "arxiv-oai": "arXiv OAI-PMH ListRecords",
    "pubmed": "PubMed efetch XML",
    "biorxiv": "bioRxiv/medRxiv API JSON",
    "rss": "RSS/Atom feed",
    "json": "Slice paper records (JSON)",
    "jsonl": "Slice paper records (JSON Lines)",
    "csv": "Slice paper records (CSV)",
}
