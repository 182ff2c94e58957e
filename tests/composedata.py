"""Papers and settings for the compose tests and the golden files (one fixed issue)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from newsletter.core.config import load_settings
from newsletter.core.models import Paper
from newsletter.core.settings import Settings
from newsletter.core.store import Store

WEEK = "2026-W22"  # Monday 2026-05-25 to Sunday 2026-05-31
NOW = datetime(2026, 6, 1, 7, 30, tzinfo=UTC)  # the Monday after WEEK, when compose runs
SEEN = datetime(2026, 5, 29, 6, 0, tzinfo=UTC)

PROFILE = """
[newsletter]
name = "Radiology AI Weekly"
tagline = "The week's imaging AI research, read for you."
postal_address = "Radiology AI Weekly, 12 Example Street, 1000 Brussels, Belgium"

[web]
base_url = "https://weekly.example.org"

[compose]
max_papers = 6
per_source_cap = 3
featured = 2

[profile]
recency_weight = 0.05
exclude = ["veterinary"]

[profile.terms]
"deep learning" = 2.0
"radiolog*" = 1.5
"CT" = 1.0
"MRI" = 1.0
"segmentation" = 1.0
"mammography" = 1.5
"foundation model" = 2.0
"""

STRUCTURED = (
    "Background: Lung cancer screening with low-dose CT produces many indeterminate nodules.\n\n"
    "Methods: We trained a deep learning model on 41 212 screening CT examinations from "
    "three sites and tested it on 9 850 examinations from a fourth site.\n\n"
    "Results: The model reached an AUC of 0.93 (95% CI: 0.91, 0.95), compared with 0.88 for "
    "Lung-RADS; false-positive recalls fell by 27%.\n\n"
    "Conclusion: A deep learning malignancy score could reduce unnecessary follow-up CT "
    "in lung cancer screening."
)

PAPERS: list[dict[str, Any]] = [
    {
        "title": "Deep learning malignancy risk for pulmonary nodules at low-dose CT screening",
        "authors": [
            "Ana Silva",
            "Ben Okafor",
            "Chen Wei",
            "Dana Levi",
            "Eli Novak",
            "Fatima Zahra",
            "Gus Berg",
        ],
        "abstract": STRUCTURED,
        "source": "pubmed",
        "kind": "paper",
        "published": date(2026, 5, 27),
        "journal": "Radiology",
        "doi": "10.1148/radiol.260001",
        "pmid": "40000001",
    },
    {
        "title": "A foundation model for chest radiograph interpretation trained on 1.2 million studies",
        "authors": ["Hana Ito", "Ivan Petrov"],
        "abstract": "We present a foundation model for chest radiography. Pretrained with "
        "self-supervision on 1.2 million radiographs, it matches radiologists on 14 findings "
        "and adapts to new tasks with 1% of the labels. Code and weights are released.",
        "source": "arxiv",
        "kind": "preprint",
        "published": date(2026, 5, 28),
        "arxiv_id": "2605.01234",
        "url": "https://arxiv.org/abs/2605.01234",
    },
    {
        "title": "Mammography AI as second reader: a prospective multicentre study",
        "authors": ["Jonas Lind", "Kari Haug", "Lea Moser"],
        "abstract": "In 55 581 women screened with mammography, AI as a second reader detected "
        "4% more cancers without raising recalls. Radiologist workload fell by 44%.",
        "source": "pubmed",
        "kind": "paper",
        "published": date(2026, 5, 26),
        "journal": "The Lancet Digital Health",
        "doi": "10.1016/S2589-7500(26)00001-1",
        "pmid": "40000002",
    },
    {
        "title": "Brain tumour segmentation on MRI with limited labels",
        "authors": ["Mo Rahman"],
        "abstract": "Semi-supervised segmentation of gliomas on MRI with 10% of the annotations "
        "reached a Dice score of 0.86, close to the fully supervised 0.88.",
        "source": "medrxiv",
        "kind": "preprint",
        "published": date(2026, 5, 25),
        "doi": "10.1101/2026.05.20.26300001",
        "url": "https://www.medrxiv.org/content/10.1101/2026.05.20.26300001v1",
    },
    {
        "title": "Large language models draft radiology report impressions: a reader study",
        "authors": ["Nia Brown", "Oscar Diaz", "Pia Kumar", "Quinn Lee"],
        "abstract": "Radiologists preferred model-drafted impressions in 61% of 800 CT and MRI "
        "reports; 3% contained a clinically significant error.",
        "source": "arxiv",
        "kind": "preprint",
        "published": date(2026, 5, 30),
        "arxiv_id": "2605.04321",
        "url": "https://arxiv.org/abs/2605.04321",
    },
    {
        "title": "Deep learning for fracture detection in canine radiographs",
        "authors": ["Rosa Vet"],
        "abstract": "A veterinary deep learning model detects fractures on canine radiographs.",
        "source": "arxiv",
        "kind": "preprint",
        "published": date(2026, 5, 27),
        "arxiv_id": "2605.05555",
    },
    {
        "title": "Hospital parking and patient satisfaction",
        "authors": ["Sam Park"],
        "abstract": "Parking availability predicts satisfaction scores.",
        "source": "pubmed",
        "kind": "paper",
        "published": date(2026, 5, 28),
        "pmid": "40000003",
    },
]


def project_settings(project: Path, environ: dict[str, str]) -> Settings:
    """The project's slice.toml replaced by the test profile."""
    (project / "slice.toml").write_text(PROFILE, encoding="utf-8")
    return load_settings(config=project / "slice.toml", environ=environ)


def add_papers(store: Store, papers: list[dict[str, Any]] | None = None) -> dict[str, int]:
    """Insert papers (first_seen in the week); returns their ids by title."""
    ids: dict[str, int] = {}
    with store.write() as session:
        for data in papers if papers is not None else PAPERS:
            paper = Paper(**{"first_seen": SEEN, **data})
            session.add(paper)
            session.flush()
            assert paper.id is not None
            ids[paper.title] = paper.id
    return ids
