"""Real-looking papers for the benchmarks: imaging-AI and general-AI titles and abstracts.

The sentences of the repository's own sample abstracts (tests/composedata.py,
tests/send_support.py) seed a word-bigram chain, and titles are built from a
lexicon of modalities, anatomy, tasks and methods, so that a week of 10,000
papers has a vocabulary of thousands of words and term frequencies like a real
feed's (a handful of invented words would make tokenizing and BM25 look cheap).
"""

from __future__ import annotations

import itertools
import random
import re
from collections import defaultdict
from dataclasses import dataclass

from tests.composedata import PAPERS
from tests.send_support import ABSTRACT, TITLES

MODALITIES = ["CT", "MRI", "PET", "ultrasound", "mammography", "chest radiograph", "X-ray",
              "digital breast tomosynthesis", "cone-beam CT", "diffusion MRI", "PET/CT",
              "cardiac MRI", "low-dose CT", "contrast-enhanced ultrasound", "fluoroscopy"]  # fmt: skip
ANATOMY = ["lung", "liver", "prostate", "breast", "brain", "knee", "heart", "kidney", "pancreas",
           "thyroid", "spine", "colon", "cervical spine", "hip", "adrenal gland", "coronary artery",
           "pulmonary nodule", "intracranial haemorrhage", "rectal cancer", "glioblastoma"]  # fmt: skip
TASKS = ["segmentation", "detection", "classification", "report generation", "triage",
         "risk prediction", "registration", "reconstruction", "quantification", "survival prediction",
         "lesion characterisation", "opportunistic screening", "quality control"]  # fmt: skip
METHODS = ["deep learning", "a foundation model", "a vision transformer", "self-supervised learning",
           "federated learning", "a large language model", "radiomics", "a convolutional network",
           "diffusion models", "contrastive pretraining", "weak supervision", "active learning",
           "multimodal fusion", "graph neural networks", "uncertainty estimation"]  # fmt: skip
STUDIES = ["a multicentre study", "external validation", "a reader study", "a prospective trial",
           "a retrospective cohort", "a systematic review", "a benchmark", "a randomised trial"]  # fmt: skip
GENERAL = ["protein folding", "robot navigation", "code generation", "weather forecasting",
           "speech recognition", "recommender systems", "mathematical reasoning", "machine translation",
           "drug discovery", "traffic prediction", "yeast cell microscopy", "autonomous driving",
           "financial time series", "molecule generation", "question answering"]  # fmt: skip
NAMES = ["Ana Silva", "Ben Okafor", "Chen Wei", "Dana Levi", "Eli Novak", "Fatima Zahra",
         "Gus Berg", "Hana Ito", "Ivan Petrov", "Julia Costa", "Kwame Mensah", "Lena Fischer"]  # fmt: skip
SOURCES = ["arxiv", "pubmed", "medrxiv"]


def _seed_text() -> str:
    texts = [ABSTRACT, *TITLES]
    for paper in PAPERS:
        texts.append(str(paper.get("abstract", "")))
        texts.append(str(paper["title"]))
    return " ".join(texts)


class Chain:
    """A word-bigram chain over the repository's sample abstracts."""

    def __init__(self, text: str) -> None:
        words = re.findall(r"[\w'’\-.,;:()%]+", text)
        self.next: dict[str, list[str]] = defaultdict(list)
        for a, b in itertools.pairwise(words):
            self.next[a].append(b)
        self.starts = [w for w in words if w[:1].isupper()]

    def sentence(self, rng: random.Random, topic: list[str], length: int = 28) -> str:
        word = rng.choice(self.starts)
        out = [word]
        for _ in range(length):
            options = self.next.get(word)
            if not options or rng.random() < 0.12:
                out.append(rng.choice(topic))  # the paper's own topic words, often
                word = rng.choice(self.starts)
            else:
                word = rng.choice(options)
            out.append(word)
        return " ".join(out).rstrip(",;:") + "."


@dataclass(frozen=True)
class FakePaper:
    title: str
    abstract: str
    source: str
    imaging: bool
    taste: float  # how much the simulated editor likes it (breast imaging up, LLM reports down)


class Generator:
    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.chain = Chain(_seed_text())
        self.serial = 0

    def paper(self, *, imaging: bool | None = None) -> FakePaper:
        rng = self.rng
        self.serial += 1
        imaging = rng.random() < 0.6 if imaging is None else imaging
        method = rng.choice(METHODS)
        if imaging:
            modality, anatomy, task = rng.choice(MODALITIES), rng.choice(ANATOMY), rng.choice(TASKS)
            title = (
                f"{method[0].upper() + method[1:]} for {anatomy} {task} on {modality}: "
                + rng.choice(STUDIES)
            )
            topic = [
                modality,
                anatomy,
                task,
                method,
                "radiologists",
                "patients",
                f"{anatomy} {task}",
            ]
        else:
            field = rng.choice(GENERAL)
            title = f"{method[0].upper() + method[1:]} for {field}: {rng.choice(STUDIES)}"
            topic = [field, method, "benchmark", "agents", "tokens", field.split()[-1]]
        sentences = [self.chain.sentence(rng, topic) for _ in range(rng.randint(5, 9))]
        sentences.append(f"Code {rng.choice(['is', 'will be'])} released (id {self.serial}).")
        abstract = " ".join(sentences)
        text = (title + " " + abstract).lower()
        taste = 0.0
        if imaging and ("breast" in text or "mammography" in text or "tomosynthesis" in text):
            taste += 3.0
        if "large language model" in text or "report generation" in text:
            taste -= 3.0
        return FakePaper(f"{title} ({self.serial})", abstract, rng.choice(SOURCES), imaging, taste)

    def authors(self) -> list[str]:
        return self.rng.sample(NAMES, k=self.rng.randint(1, 6))
