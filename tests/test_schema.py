"""The models describe the database the migrations make: types, nullability, keys and indexes.

Alembic's autogenerate comparison reads the migrated database back (on SQLite and on
PostgreSQL) and lists every difference with the tables declared in newsletter.core.models;
the list must be empty. A new migration that changes a table needs the model changed with it.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Index, MetaData, inspect
from sqlmodel import SQLModel

from newsletter.core.migrations import migrations_table
from newsletter.core.store import Store

# Tables the migrations make that no model declares, and why.
NOT_MODELS = {
    # SQLite FTS5: the virtual table and its shadow tables (m050, m051), queried by papers.search
    "papers_fts": "search index",
    "papers_fts_data": "search index",
    "papers_fts_idx": "search index",
    "papers_fts_docsize": "search index",
    "papers_fts_config": "search index",
    "papers_fts_content": "search index",
    # PostgreSQL: each paper's tsvector document, kept by a trigger (m052), queried by papers.search
    "paper_search": "search index",
}


def _only_ours(name: str | None, type_: str, _parents: Any) -> bool:
    return not (type_ == "table" and name in NOT_MODELS)


def _differences(store: Store, metadata: list[MetaData]) -> list[Any]:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": False,  # the models set defaults in Python, not SQL
                "include_name": _only_ours,
            },
        )
        return list(compare_metadata(context, metadata))  # type: ignore[arg-type]


def _declared() -> list[MetaData]:
    return [SQLModel.metadata, migrations_table.metadata]


def test_models_match_the_migrated_database(any_store: Store) -> None:
    differences = _differences(any_store, _declared())
    assert differences == [], (
        f"the models and the migrated {any_store.engine.dialect.name} database differ "
        "(change the model, or add a migration, so they agree):\n"
        + "\n".join(repr(d) for d in differences)
    )


def test_every_table_is_declared_or_listed(any_store: Store) -> None:
    """A table a migration adds without a model is caught too (not just skipped)."""
    declared = {name for meta in _declared() for name in meta.tables}
    existing = set(inspect(any_store.engine).get_table_names())
    assert existing - declared - set(NOT_MODELS) == set()


def test_the_comparison_sees_types_nullability_and_indexes(any_store: Store) -> None:
    """The check above on purposely wrong models: each kind of drift is reported."""
    wrong = MetaData()
    for table in SQLModel.metadata.sorted_tables:
        table.to_metadata(wrong)
    papers = wrong.tables["papers"]
    papers.c.abstract.nullable = True  # the database says NOT NULL
    papers.c.url.type = papers.c.published.type  # TEXT in the database, DATE here
    Index("ix_papers_journal", papers.c.journal)  # no such index in the database
    found = _differences(any_store, [wrong, migrations_table.metadata])
    flat = [d for group in found for d in (group if isinstance(group, list) else [group])]
    kinds = {(d[0], d[2], d[3]) if d[0].startswith("modify") else (d[0], d[1].name) for d in flat}
    assert kinds == {
        ("modify_nullable", "papers", "abstract"),
        ("modify_type", "papers", "url"),
        ("add_index", "ix_papers_journal"),
    }
