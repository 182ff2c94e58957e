"""The editor's choices per issue, kept so that selection can learn from them.

Each compose records, for its issue, every paper the editor touched or kept:

- ``pinned``   the editor added it (``--pin``, or by hand in issue.json)
- ``excluded`` the editor removed it (``--exclude``, or deleted from issue.json)
- ``kept``     proposed by the profile and left in
- ``passed``   ranked by the profile but not proposed (the nearest runners-up)

Pins and exclusions are the strong signals; kept and passed papers are weak ones
that let a model learn from pins alone or from removals alone.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlmodel import Session

from newsletter.core.models import Paper, issue_choices, utcnow
from newsletter.issue.scoring import paper_tokens

CHOICES = ("pinned", "excluded", "kept", "passed")
# How much each kind of choice counts when training (pins and removals are what the editor did).
WEIGHTS = {"pinned": 2.0, "excluded": 2.0, "kept": 0.5, "passed": 0.25}


@dataclass(frozen=True)
class RecordedChoice:
    issue_id: str
    paper_id: int
    choice: str


def record(session: Session, issue_id: str, choices: Iterable[tuple[int, str]]) -> None:
    """Replace the recorded choices of ``issue_id`` (the issue row must exist)."""
    session.execute(delete(issue_choices).where(issue_choices.c.issue_id == issue_id))
    rows = [
        {"issue_id": issue_id, "paper_id": pid, "choice": choice, "recorded_at": utcnow()}
        for pid, choice in dict(choices).items()
        if choice in CHOICES
    ]
    if rows:
        session.execute(insert(issue_choices), rows)


def recorded(session: Session, issue_id: str | None = None) -> list[RecordedChoice]:
    query = select(issue_choices.c.issue_id, issue_choices.c.paper_id, issue_choices.c.choice)
    if issue_id is not None:
        query = query.where(issue_choices.c.issue_id == issue_id)
    return [RecordedChoice(*row) for row in session.execute(query.order_by("issue_id", "paper_id"))]


def training_set(session: Session, *, except_issue: str) -> list[Choice]:
    """The editor's past choices (other issues than ``except_issue``) as training examples."""
    query = (
        select(Paper, issue_choices.c.choice)
        .join(issue_choices, issue_choices.c.paper_id == Paper.id)  # type: ignore[arg-type]
        .where(issue_choices.c.issue_id != except_issue)
    )
    out: list[Choice] = []
    for paper, choice in session.execute(query):
        wanted = choice in ("pinned", "kept")
        out.append(Choice(paper_tokens(paper), wanted, WEIGHTS[choice]))
    return out


# --- learning from the editor -------------------------------------------------


# Words too common to say anything about a paper's topic (the editor model skips them).
_STOPWORDS = (
    "the and for with from into over under between after before this that these those are was "
    "were been has have had not but its our their than then also using use used based via can "
    "may new study"
)
STOPWORDS = frozenset(_STOPWORDS.split())


@dataclass(frozen=True)
class Choice:
    """One past editor decision: the paper's words and whether the editor wanted it."""

    words: list[str]
    wanted: bool
    weight: float = 1.0


class EditorModel:
    """Logistic regression on TF-IDF features of past pins (wanted) and removals (not wanted).

    Written by hand on sparse dicts: a few hundred examples of a few hundred words
    each train in milliseconds, and pulling numpy or scikit-learn into the install
    for this alone would outweigh the model. L2-regularized, trained by full-batch
    gradient descent, so the same history always gives the same model.
    """

    def __init__(self, idf: dict[str, float], coef: dict[str, float], bias: float, examples: int):
        self.idf = idf
        self.coef = coef
        self.bias = bias
        self.examples = examples

    @staticmethod
    def features(words: Sequence[str], idf: Mapping[str, float]) -> dict[str, float]:
        counts = Counter(w for w in words if w in idf and len(w) > 2 and w not in STOPWORDS)
        vec = {w: (1 + math.log(c)) * idf[w] for w, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {w: v / norm for w, v in vec.items()}

    @classmethod
    def train(
        cls, choices: Sequence[Choice], *, epochs: int = 200, rate: float = 0.5, l2: float = 0.02
    ) -> EditorModel | None:
        """A model, or None when the history cannot teach anything (no wanted or no unwanted)."""
        if not any(c.wanted for c in choices) or all(c.wanted for c in choices):
            return None
        df: Counter[str] = Counter()
        for c in choices:
            df.update(set(c.words))
        n = len(choices)
        idf = {w: math.log((1 + n) / (1 + d)) + 1 for w, d in df.items()}
        xs = [cls.features(c.words, idf) for c in choices]
        ys = [1.0 if c.wanted else 0.0 for c in choices]
        ws = [c.weight for c in choices]
        total = sum(ws)
        coef: dict[str, float] = {}
        bias = 0.0
        for _ in range(epochs):
            grad: dict[str, float] = {}
            grad_bias = 0.0
            for x, y, w in zip(xs, ys, ws, strict=True):
                z = bias + sum(coef.get(k, 0.0) * v for k, v in x.items())
                err = (_sigmoid(z) - y) * w / total
                grad_bias += err
                for k, v in x.items():
                    grad[k] = grad.get(k, 0.0) + err * v
            for k in set(grad) | set(coef):
                coef[k] = coef.get(k, 0.0) - rate * (grad.get(k, 0.0) + l2 * coef.get(k, 0.0))
            bias -= rate * grad_bias
        return cls(idf, coef, bias, n)

    def probability(self, words: Sequence[str]) -> float:
        x = self.features(words, self.idf)
        return _sigmoid(self.bias + sum(self.coef.get(k, 0.0) * v for k, v in x.items()))

    def points(self, words: Sequence[str], *, weight: float) -> float:
        """Score points for a paper, between -``weight`` and +``weight``.

        Measured from the model's base rate, so a paper sharing no word with the history
        gets no points either way.
        """
        lean = 2 * (self.probability(words) - _sigmoid(self.bias))
        return weight * max(-1.0, min(1.0, lean))

    def top_terms(self, n: int = 10) -> list[tuple[str, float]]:
        """The words that count most, either way (for --explain)."""
        return sorted(self.coef.items(), key=lambda kv: -abs(kv[1]))[:n]


def _sigmoid(z: float) -> float:
    if z < -30:
        return 0.0
    if z > 30:
        return 1.0
    return 1.0 / (1.0 + math.exp(-z))
