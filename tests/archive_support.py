"""Shared by the archive tests: papers inserted straight into the store, and an HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from newsletter.core.models import Paper
from newsletter.core.store import Store

TOPICS = [
    ("Deep learning triage of chest radiographs in the emergency department", "chest radiograph"),
    ("Federated learning for brain MRI tumour segmentation across hospitals", "brain MRI"),
    ("Foundation models for CT report generation", "CT report"),
    ("Mammography screening with transformer ensembles", "mammography"),
    ("Uncertainty estimation for liver lesion detection on ultrasound", "ultrasound"),
]


def make_paper(i: int, **fields: Any) -> Paper:
    title, topic = TOPICS[i % len(TOPICS)]
    values: dict[str, Any] = {
        "title": f"{title} ({i})",
        "authors": [f"Author{i} Alpha", "Beatriz Gómez", "Chen Wei"],
        "abstract": f"We study {topic} in a cohort of {100 + i} patients. " * 6,
        "source": ("arxiv", "pubmed", "medrxiv")[i % 3],
        "kind": "preprint" if i % 3 != 1 else "paper",
        "published": date(2025, 6, 1) + timedelta(days=i),
        "url": f"https://example.org/paper/{i}",
        "doi": f"10.1234/slice.{i}",
    }
    values.update(fields)
    return Paper(**values)


def add_papers(store: Store, papers: Iterable[Paper]) -> list[int]:
    with store.write() as session:
        rows = list(papers)
        session.add_all(rows)
        session.flush()
        return [p.id or 0 for p in rows]


def get(app: FastAPI, url: str, *, follow: bool = True) -> httpx.Response:
    """GET ``url`` from the app through ASGI, as a browser would ask for it."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://slice.test", follow_redirects=follow
        ) as client:
            return await client.get(url)

    return asyncio.run(go())
