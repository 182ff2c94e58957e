"""Slice: weekly research-paper briefings by email.

The package is grouped by the data flow; each part imports only the parts
before it (an import-linter contract in pyproject.toml holds the order):

- `newsletter.core`: settings, the store, the tables and their migrations, errors
- `newsletter.papers`: papers in: sources, ingest, text hygiene, queries, search
- `newsletter.issue`: the issue: select, editor choices, compose, render, outbox
- `newsletter.readers`: subscribers, their tokens, their emails, bounces
- `newsletter.send`: the ledger, the message, DKIM, the relay, the rate limit
- `newsletter.web`: `slice serve`: signup, confirm, unsubscribe, the archive
- `newsletter.demo` and `newsletter.cli`: the whole loop, and the `slice` command

The default templates are the top-level templates/ folder, shipped as
``newsletter.templates``.
"""

__version__ = "0.1.0"
