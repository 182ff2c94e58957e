"""The tables of papers and the issue: [fetch], [[sources]], [profile], [compose], [stories].

Part of the settings model, `newsletter.core.settings.Settings`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from newsletter.core.sitesettings import Section


class FetchSettings(Section):
    contact_email: str = Field(
        "", description="Contact address sent to sources that ask for one (PubMed's email=)."
    )
    timeout: float = Field(30.0, gt=0, description="Seconds to wait for a source's answer.")
    retries: int = Field(4, ge=0, description="Retries on 429, 5xx and connection errors.")
    lookback_days: int = Field(
        8, ge=1, description="`slice fetch` without --since reaches back this far."
    )


class SourceSettings(BaseModel):
    """One entry of ``[[sources]]``: a name, a kind, and the kind's own options.

    The options are checked by the source kind itself (see `newsletter.papers.sources`).
    """

    model_config = ConfigDict(extra="allow")

    name: str
    kind: str
    enabled: bool = True

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ProfileSettings(Section):
    """What the newsletter covers: weighted terms and terms that exclude a paper."""

    terms: dict[str, float] = Field(
        default_factory=dict, description='Terms and their weights, e.g. { "deep learning" = 2.0 }.'
    )
    exclude: list[str] = Field(
        default_factory=list, description="A paper with any of these terms is left out."
    )
    recency_weight: float = Field(
        0.1, ge=0, description="How much a newer paper gains over an older one."
    )
    learn_from_editor: bool = Field(
        True, description="Let past pins and removals raise or lower similar papers."
    )
    editor_weight: float = Field(
        3.0,
        ge=0,
        description="Most points the editor's past choices can add to or take from a paper.",
    )
    min_score: float = Field(
        1.0,
        ge=0,
        description="The relevance floor: a paper is a candidate when its matching profile "
        "terms' weights (a term in the abstract only counts half) add up to this; a thin week "
        "gives a short issue.",
    )
    required: list[str] = Field(
        default_factory=list,
        description="The floor's topic: a paper must contain at least one of these terms "
        '(e.g. ["radiolog*", "CT", "MRI"]); empty: any profile term will do.',
    )


class ComposeSettings(Section):
    max_papers: int = Field(10, ge=1, description="Papers in an issue.")
    dated_sources: list[str] = Field(
        default_factory=lambda: ["arxiv", "pubmed", "medrxiv", "biorxiv"],
        description="Sources whose publication dates are reliable: their papers are candidates "
        "in the week they were published. Papers of other sources count from when they were "
        "first seen.",
    )
    late_days: int = Field(
        28,
        ge=0,
        description="A paper first seen in the window (from a source not in dated_sources) is a "
        "candidate only if it was published at most this many days before the window.",
    )
    per_source_cap: int = Field(6, ge=1, description="At most this many papers from one source.")
    featured: int = Field(2, ge=0, description="How many top papers render as featured stories.")
    abstract_chars: int = Field(
        1200, ge=100, description="Longer abstracts are cut at a sentence, with a link."
    )
    max_authors: int = Field(
        6, ge=1, description="Longer author lists show the first few and 'et al.'."
    )
    subject_chars: int = Field(
        70,
        ge=20,
        le=250,
        description="The default subject (from the featured headlines) fits in this many characters.",
    )


class StoriesSettings(Section):
    """Story drafts for the featured papers (headline, why it matters, details, takeaway)."""

    drafts: bool = Field(
        True, description="Draft a story for each featured paper the editor has not written."
    )
    model: str = Field(
        "",
        description="An llm model (id or alias, e.g. 'gpt-4o-mini' or a local model) to draft "
        "stories; empty: extractive drafts from the abstract, offline.",
    )
    timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds compose waits for the model's draft of one story; with no answer "
        "by then the extractive draft stands in, and the model is not asked again in that compose.",
    )
