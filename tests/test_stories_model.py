"""Story drafts by a language model through llm, with a fake model registered as a plugin.

The fake model (tests/llm_fake_plugin.py) joins llm's plugin manager through the
``register_models`` hook, exactly as an installed plugin would; Slice asks llm for the
model named in ``[stories] model`` and never knows it is a fake.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from newsletter.core.errors import ComposeError, ConfigError
from newsletter.core.settings import Settings
from newsletter.core.store import Store
from newsletter.issue.compose import compose_issue
from newsletter.issue.window import week_window
from tests.composedata import NOW, WEEK, add_papers

llm = pytest.importorskip(
    "llm", reason="the llm library is not installed (pip install -e '.[dev]')"
)
from tests import llm_fake_plugin as fake  # noqa: E402 - only once llm is known to be there

PLUGIN_NAME = "slice-test-fake-stories"
pytestmark = pytest.mark.usefixtures("fake_model")


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # llm keeps its aliases and keys in LLM_USER_PATH: a fresh folder, nothing of the user's
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path / "llm"))
    llm.plugins.pm.register(fake, name=PLUGIN_NAME)
    fake.ANSWERS.clear()
    fake.PROMPTS.clear()
    fake.RELEASE.clear()
    try:
        yield
    finally:
        fake.RELEASE.set()  # a stalled call left behind ends now
        fake.STALL_SECONDS = 0.0
        llm.plugins.pm.unregister(name=PLUGIN_NAME)
        fake.ANSWERS.clear()


def answer(**story: Any) -> str:
    return "Here is the story:\n```json\n" + json.dumps(story) + "\n```"


FOUNDATION_STORY = {
    "headline": "One chest X-ray model, 1% of the labels",
    "why_it_matters": "Labelled images are what imaging AI runs short of.",
    "details": [
        "Pretrained on 1.2 million radiographs without labels",
        "Matches radiologists on 14 findings",
    ],
    "takeaway": "Shared foundation models may make small labelled sets enough.",
}
MAMMO_STORY = {
    "headline": "AI as second reader finds 4% more breast cancers",
    "why_it_matters": "Screening programmes are short of radiologists.",
    "details": ["55 581 women screened", "4% more cancers, no more recalls", "44% less reading"],
    "takeaway": "A second reader can be software.",
}


def compose(settings: Settings, store: Store):  # type: ignore[no-untyped-def]
    return compose_issue(settings, store, window=week_window(WEEK), now=NOW)


def stories(result: Any) -> list[dict[str, Any]]:
    papers: list[dict[str, Any]] = json.loads(result.folder.selection.read_text())["papers"]
    return [p for p in papers if p["featured"]]


def test_the_named_model_drafts_the_stories(csettings: Settings, cstore: Store) -> None:
    add_papers(cstore)
    csettings.stories.model = "fake"  # an alias the plugin registered
    fake.ANSWERS.extend([answer(**FOUNDATION_STORY), answer(**MAMMO_STORY)])
    result = compose(csettings, cstore)
    first, second = stories(result)
    assert first["headline"] == FOUNDATION_STORY["headline"]
    assert first["details"] == FOUNDATION_STORY["details"]
    assert first["draft"]["by"] == "model:fake" and second["draft"]["by"] == "model:fake"
    assert second["takeaway"] == "A second reader can be software."
    assert result.warnings == []
    # the model was given the paper's own title and abstract
    assert "Title: A foundation model for chest radiograph interpretation" in fake.PROMPTS[0]
    assert "adapts to new tasks with 1% of the labels" in fake.PROMPTS[0]
    assert "One chest X-ray model, 1% of the labels" in result.folder.email_html.read_text()


def test_a_draft_with_an_invented_figure_is_rejected_for_the_extractive_one(
    csettings: Settings, cstore: Store
) -> None:
    add_papers(cstore)
    csettings.stories.model = "fake-stories"
    invented = {**FOUNDATION_STORY, "details": ["Matches radiologists on 14 findings", "AUC 0.97"]}
    fake.ANSWERS.extend([answer(**invented), answer(**MAMMO_STORY)])
    result = compose(csettings, cstore)
    first, second = stories(result)
    assert first["draft"]["by"] == "extractive"
    assert first["headline"] == "A foundation model for chest radiograph interpretation"
    assert "AUC 0.97" not in json.dumps(first)
    assert second["draft"]["by"] == "model:fake-stories"
    (warning,) = result.warnings
    assert warning.startswith(f"paper {first['id']}: the fake-stories draft was not used")
    assert "figures not in the abstract: 0.97" in warning


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("I cannot help with that.", "the answer holds no JSON object"),
        (answer(**{**MAMMO_STORY, "headline": "A" * 71}), "the headline has 71 characters"),
        (answer(**{**MAMMO_STORY, "details": ["55 581 women screened"]}), "1 details (2 to 5 wanted)"),
        ("{not json}", "is not a usable draft"),
        (None, "the model failed: RuntimeError: the fake model has no answer left"),
    ],
)  # fmt: skip
def test_unusable_answers_fall_back_to_the_extractive_draft(
    csettings: Settings, cstore: Store, reply: str | None, reason: str
) -> None:
    add_papers(cstore)
    csettings.compose.featured = 1
    csettings.stories.model = "fake-stories"
    if reply is not None:
        fake.ANSWERS.append(reply)
    result = compose(csettings, cstore)
    (story,) = stories(result)
    assert story["draft"]["by"] == "extractive" and story["details"]
    (warning,) = result.warnings
    assert reason in warning


def test_an_unknown_model_is_a_one_line_error(csettings: Settings, cstore: Store) -> None:
    add_papers(cstore)
    csettings.stories.model = "no-such-model"
    with pytest.raises(ComposeError) as caught:
        compose(csettings, cstore)
    assert str(caught.value) == (
        "[stories] model = 'no-such-model' is not a model llm knows; `llm models` lists them "
        "(install the plugin that provides it), or remove the setting for extractive drafts."
    )


def test_the_model_is_not_asked_when_every_story_is_written(
    csettings: Settings, cstore: Store
) -> None:
    add_papers(cstore)
    first = compose(csettings, cstore)  # extractive drafts, no model set
    csettings.stories.model = "no-such-model"  # would fail if it were looked up
    again = compose(csettings, cstore)
    assert stories(again) == stories(first) and fake.PROMPTS == []


def test_a_model_that_does_not_answer_in_time_gives_way_to_the_extractive_drafts(
    csettings: Settings, cstore: Store
) -> None:
    """A hung model (a stalled API, a local model still loading) does not hang compose."""
    add_papers(cstore)
    csettings.stories.model = "fake-stories"
    csettings.stories.timeout = 0.5
    fake.STALL_SECONDS = 30.0
    fake.ANSWERS.extend([answer(**FOUNDATION_STORY), answer(**MAMMO_STORY)])
    started = time.monotonic()
    result = compose(csettings, cstore)
    assert time.monotonic() - started < 10
    first, second = stories(result)
    assert first["draft"]["by"] == second["draft"]["by"] == "extractive"
    assert first["details"] and second["details"]
    assert len(fake.PROMPTS) == 1  # after one wait the model is not asked again
    assert result.warnings == [
        f"paper {first['id']}: the fake-stories draft was not used (no answer within 0.5 s); "
        "the extractive draft stands in.",
        f"paper {second['id']}: fake-stories was not asked (it gave no answer within 0.5 s "
        f"for paper {first['id']}); the extractive draft stands in.",
    ]


def test_the_timeout_is_a_setting_of_stories(tmp_path: Path) -> None:
    from newsletter.core.config import load_settings

    (tmp_path / "slice.toml").write_text("[stories]\ntimeout = 12.5\n")
    assert load_settings(cwd=tmp_path).stories.timeout == 12.5
    (tmp_path / "slice.toml").write_text("[stories]\ntimeout = 0\n")
    with pytest.raises(ConfigError, match=r"setting 'stories\.timeout'"):
        load_settings(cwd=tmp_path)
