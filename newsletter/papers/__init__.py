"""Papers in: from sources and files to one stored record per work, and back out.

- `sources`: one protocol and registry for arXiv, PubMed, medRxiv/bioRxiv, RSS, and
  local files (`read_file`)
- `fetch`: `run_fetch`, the configured sources run and their papers ingested
- `ingest`: `ingest`, `ingest_files`: records validated, deduplicated, linked, stored
- `text`: text hygiene applied once at ingest (safe inline markup, plain text, names)
- `queries`: `list_papers` behind `slice papers`
- `search`: `search_papers`, the archive's full-text search on SQLite and PostgreSQL
"""
