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

import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlmodel import Session

from newsletter.core.models import Issue, IssueStatus, Paper, issue_choices, table, utcnow
from newsletter.issue.scoring import text_tokens

I = table(Issue)  # noqa: E741

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


# The history the editor model learns from: the last HISTORY_ISSUES issues, each
# issue's choices weighing half as much every HALF_LIFE issues back. Two years of
# weekly choices then train as fast as one, and last month's taste counts most.
HISTORY_ISSUES = 52
HALF_LIFE = 26


def history(session: Session, *, except_issue: str) -> list[tuple[str, int, str, int]]:
    """(issue, paper, choice, age in issues) of the newest `HISTORY_ISSUES` issues' choices."""
    conn = session.connection()
    recent = [
        str(row[0])
        for row in conn.execute(
            select(I.c.id)
            .where(I.c.id != except_issue, I.c.status != IssueStatus.DISCARDED.value)
            .order_by(I.c.window_start.desc(), I.c.id.desc())
            .limit(HISTORY_ISSUES)
        )
    ]
    age = {issue_id: n for n, issue_id in enumerate(recent)}
    query = (
        select(issue_choices.c.issue_id, issue_choices.c.paper_id, issue_choices.c.choice)
        .where(issue_choices.c.issue_id.in_(recent))
        .order_by(issue_choices.c.issue_id, issue_choices.c.paper_id)
    )
    return [(str(i), int(p), str(c), age[str(i)]) for i, p, c in conn.execute(query)]


def history_key(rows: Sequence[tuple[str, int, str, int]]) -> str:
    """Names a history: the same key, the same trained model."""
    text = f"{HISTORY_ISSUES}/{HALF_LIFE}/" + ";".join(f"{i},{p},{c},{a}" for i, p, c, a in rows)
    return hashlib.sha256(text.encode()).hexdigest()


def training_set(session: Session, *, except_issue: str) -> list[Choice]:
    """The editor's past choices (other issues than ``except_issue``) as training examples.

    Read as plain rows (title and abstract only), from the newest `HISTORY_ISSUES`
    issues, with weights decayed by the issue's age.
    """
    rows = history(session, except_issue=except_issue)
    P = table(Paper)
    texts = {
        int(pid): (title, abstract)
        for pid, title, abstract in session.connection().execute(
            select(P.c.id, P.c.title, P.c.abstract).where(P.c.id.in_({r[1] for r in rows}))
        )
    }
    out: list[Choice] = []
    for _issue, pid, choice, age in rows:
        if pid not in texts:
            continue
        wanted = choice in ("pinned", "kept")
        decay = 0.5 ** (age / HALF_LIFE)
        out.append(Choice(text_tokens(*texts[pid]), wanted, WEIGHTS[choice] * decay))
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

    Written by hand on sparse dicts: a bounded history (`HISTORY_ISSUES`) of a few
    hundred words per example trains in a fraction of a second by SGD, and pulling
    numpy or scikit-learn into the install for this alone would outweigh the model.
    L2-regularized; the same history always gives the same model.
    """

    def __init__(self, idf: dict[str, float], coef: dict[str, float], bias: float, examples: int):
        self.idf = idf
        self.coef = coef
        self.bias = bias
        self.examples = examples
        self._usable: dict[str, float] | None = None

    @staticmethod
    def features(words: Sequence[str], idf: Mapping[str, float]) -> dict[str, float]:
        # counted first (in C), then each distinct word filtered: the same counts, in the same
        # order, as counting the filtered words
        counts = Counter(words)
        vec = {
            w: (1 + math.log(c)) * idf[w]
            for w, c in counts.items()
            if w in idf and len(w) > 2 and w not in STOPWORDS
        }
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {w: v / norm for w, v in vec.items()}

    @classmethod
    def train(
        cls, choices: Sequence[Choice], *, epochs: int = 12, rate: float = 0.5, l2: float = 0.002
    ) -> EditorModel | None:
        """A model, or None when the history cannot teach anything (no wanted or no unwanted).

        Stochastic gradient descent over the examples in a fixed shuffled order (the
        same history always gives the same model), a dozen passes with a falling rate:
        a year of weekly choices trains in a fraction of a second where 200 full-batch
        epochs took seconds. Words seen in one example only are left out: they cannot
        generalise, and they are most of the vocabulary.
        """
        if not any(c.wanted for c in choices) or all(c.wanted for c in choices):
            return None
        df: Counter[str] = Counter()
        for c in choices:
            df.update(set(c.words))
        n = len(choices)
        idf = {w: math.log((1 + n) / (1 + d)) + 1 for w, d in df.items() if d > 1}
        xs = [list(cls.features(c.words, idf).items()) for c in choices]
        mean_weight = sum(c.weight for c in choices) / n
        coef: dict[str, float] = {}
        bias = 0.0
        order = list(range(n))
        shuffle = random.Random(n)
        for epoch in range(epochs):
            shuffle.shuffle(order)
            step = rate / (1 + epoch)
            for i in order:
                x, c = xs[i], choices[i]
                z = bias + sum(coef.get(k, 0.0) * v for k, v in x)
                err = (_sigmoid(z) - (1.0 if c.wanted else 0.0)) * c.weight / mean_weight
                bias -= step * err
                for k, v in x:
                    w = coef.get(k, 0.0)
                    coef[k] = w - step * (err * v + l2 * w)
        return cls(idf, coef, bias, n)

    def to_json(self) -> str:
        return json.dumps(
            {"idf": self.idf, "coef": self.coef, "bias": self.bias, "examples": self.examples}
        )

    @classmethod
    def from_json(cls, text: str) -> EditorModel:
        data = json.loads(text)
        return cls(data["idf"], data["coef"], float(data["bias"]), int(data["examples"]))

    def probability(self, words: Sequence[str]) -> float:
        """`features` of ``words`` (the same numbers, in the same order) through the model."""
        if self._usable is None:  # the words `features` keeps, with their IDF
            self._usable = {w: v for w, v in self.idf.items() if len(w) > 2 and w not in STOPWORDS}
        usable, coef = self._usable, self.coef
        vec = {w: (1 + math.log(c)) * usable[w] for w, c in Counter(words).items() if w in usable}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return _sigmoid(self.bias + sum(coef.get(k, 0.0) * (v / norm) for k, v in vec.items()))

    def points(self, words: Sequence[str], *, weight: float) -> float:
        """Score points for a paper, between -``weight`` and +``weight``.

        Measured from the model's base rate, so a paper sharing no word with the history
        gets no points either way.
        """
        lean = 2 * (self.probability(words) - _sigmoid(self.bias))
        return weight * max(-1.0, min(1.0, lean))

    def max_points(self, weight: float) -> float:
        """The most `points` can give any paper: its features have unit length and are
        never negative, so they add at most the length of the positive coefficients."""
        reach = math.sqrt(sum(w * w for w in self.coef.values() if w > 0))
        lean = 2 * (_sigmoid(self.bias + reach) - _sigmoid(self.bias))
        return weight * max(0.0, min(1.0, lean)) + 1e-9

    def top_terms(self, n: int = 10) -> list[tuple[str, float]]:
        """The words that count most, either way (for --explain)."""
        return sorted(self.coef.items(), key=lambda kv: -abs(kv[1]))[:n]


def _sigmoid(z: float) -> float:
    if z < -30:
        return 0.0
    if z > 30:
        return 1.0
    return 1.0 / (1.0 + math.exp(-z))
