"""What the editor chose in each issue: the history `slice compose` learns from."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, Index, Integer, MetaData, String, Table
from sqlalchemy.engine import Connection


def upgrade(conn: Connection) -> None:
    meta = MetaData()
    # the tables referred to, as far as the foreign keys need them (they exist already)
    Table("issues", meta, Column("id", String, primary_key=True))
    Table("papers", meta, Column("id", Integer, primary_key=True))
    choices = Table(
        "issue_choices",
        meta,
        Column("issue_id", String, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
        Column("paper_id", Integer, ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True),
        Column("choice", String, nullable=False),
        Column("recorded_at", DateTime(timezone=True), nullable=False),
        Index("ix_issue_choices_paper", "paper_id"),
    )
    choices.create(conn)
