"""Papers in: from sources and files to one stored record per work, and back out.

- `sources`: one protocol and registry for arXiv, PubMed, medRxiv/bioRxiv, RSS, and
  local files (`read_file`)
- `fetch`: `run_fetch`, the configured sources run and their papers ingested
- `records`: `validate`, a record checked and its identifiers normalized before it is stored
- `ingest`: `ingest`, `ingest_files`: records validated and stored a chunk at a time
- `merge`: `Merger`, each record matched to its stored twin (one per work), preprints linked
- `readahead`: `read_records`, a big file parsed in a helper process while ingest stores
- `rows`: paper rows below the ORM, read and written a chunk at a time for ingest
- `text`, `mathtext`: text hygiene applied once at ingest (safe inline markup, plain text,
  control characters, nesting depth; MathML and TeX as readable text)
- `headings`: structured abstracts' section labels, one paragraph each
- `names`: author names normalized; the folded title and surname that dedup compares
- `links`: `paper_link`, where a paper is read
- `formats`: the file formats `slice ingest` reads
- `queries`: `list_papers` behind `slice papers`; a preprint's journal version and back
- `search`: `search_papers`, the archive's full-text search on SQLite and PostgreSQL
- `searchquery`: `parse_query`, the reader's words, phrases, exclusions and OR, and what
  each engine's index is asked
- `searchparams`: `SearchParams`, a search's filters, sort and page, read from the URL
"""
