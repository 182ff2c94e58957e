"""A fake language model for the story-draft tests, registered as an llm plugin.

`tests/test_stories_model.py` registers this module with llm's plugin manager (the
same pluggy hook, ``register_models``, that an installed plugin provides), so Slice
finds the model through ``llm.get_model("fake-stories")`` like any other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import llm

ANSWERS: list[str] = []  # what the model answers next, one per prompt
PROMPTS: list[str] = []  # the prompts it was given
MODEL_ID = "fake-stories"
# A model that hangs: each prompt waits this long (or until RELEASE is set) before answering
STALL_SECONDS = 0.0
RELEASE = threading.Event()


class FakeStoryModel(llm.Model):
    model_id = MODEL_ID
    can_stream = False

    def execute(
        self,
        prompt: llm.Prompt,
        stream: bool,
        response: llm.Response,
        conversation: llm.Conversation | None,
    ) -> Iterator[str]:
        PROMPTS.append(prompt.prompt or "")
        if STALL_SECONDS:
            RELEASE.wait(STALL_SECONDS)
        if not ANSWERS:
            raise RuntimeError("the fake model has no answer left")
        yield ANSWERS.pop(0)


@llm.hookimpl
def register_models(register: Callable[..., None]) -> None:
    register(FakeStoryModel(), aliases=("fake",))
