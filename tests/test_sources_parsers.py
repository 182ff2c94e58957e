"""The parsers, on our own fixtures (every trap the sources are known for) and on recorded answers.

fixtures/sources/recorded/ holds real answers of arXiv, PubMed and bioRxiv/medRxiv, trimmed to
a few entries: ids, dates, names and titles as recorded, abstracts cut to the sentences that carry
a trap (markup, TeX, glued headings). See its README for how they were made.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from newsletter.core.errors import (
    ConfigError,
    ParseError,
    SourceError,
    SourceHTTPError,
    UnknownFormatError,
)
from newsletter.core.settings import SourceSettings
from newsletter.papers.sources import arxiv, biorxiv, build_source, pubmed, rss
from newsletter.papers.sources.base import PaperRecord
from newsletter.papers.sources.files import detect_format, read_file
from tests.conftest import FIXTURES

HERE = FIXTURES / "sources"
RECORDED = HERE / "recorded"


def sample(name: str) -> Path:
    return RECORDED / name


# --- arXiv ------------------------------------------------------------------


def test_arxiv_legacy_format() -> None:
    records, total = arxiv.parse_feed((HERE / "arxiv_legacy.xml").read_bytes())
    assert total == 2
    first, old = records
    assert first.arxiv_id == "2508.01234"  # version dropped
    assert first.extra["version"] == "v2"
    assert first.url == "https://arxiv.org/abs/2508.01234"
    assert first.doi == "10.48550/arxiv.2508.01234"
    assert (
        first.published_doi == "10.1148/radiol.2025999"
    )  # the journal version: a link, not our DOI
    assert first.title == "Foundation models for chest radiograph report generation"
    assert first.abstract == (
        "We train a model on 10<sup>5</sup> radiographs from Schröder's cohort and reach "
        "α<sub>i</sub> ≤ 0.3 error."
    )
    assert first.authors == ["Ana Pérez", "Li Wei"]
    assert first.published == date(2025, 8, 18)
    assert first.kind == "preprint"
    assert old.arxiv_id == "physics/0408020"
    assert old.url == "https://arxiv.org/abs/physics/0408020"


def test_arxiv_new_format() -> None:
    records, total = arxiv.parse_feed((HERE / "arxiv_new.xml").read_bytes())
    assert total == 1
    assert records[0].arxiv_id == "2511.04321"
    assert records[0].extra["primary_category"] == "eess.IV"


def test_arxiv_error_entry_is_an_error_not_a_paper() -> None:
    with pytest.raises(SourceError, match=r"incorrect id format for 1234\.12345"):
        arxiv.parse_feed((HERE / "arxiv_error.xml").read_bytes())


def test_arxiv_rate_exceeded_is_an_error() -> None:
    with pytest.raises(SourceHTTPError, match="Rate exceeded"):
        arxiv.parse_feed(b"Rate exceeded.")


def test_arxiv_real_samples() -> None:
    legacy, _ = arxiv.parse_feed(sample("arxiv_api_atom_legacy_format_2025-08.xml").read_bytes())
    new, _ = arxiv.parse_feed(sample("arxiv_api_atom_new_format_2025-11.xml").read_bytes())
    empty, total = arxiv.parse_feed(sample("arxiv_api_atom_empty_2025-11.xml").read_bytes())
    missing, _ = arxiv.parse_feed(sample("arxiv_api_atom_missing_id_2025-11.xml").read_bytes())
    assert len(legacy) == 3 and len(new) == 3 and empty == [] and total == 0
    assert [r.arxiv_id for r in missing] == ["2201.13452"]
    assert new[0].arxiv_id == "nucl-ex/0408020"
    assert all(r.url.startswith("https://arxiv.org/abs/") and r.published for r in legacy + new)
    assert all("\n" not in r.title and "$" not in r.abstract for r in legacy + new)
    prelc = next(r for r in legacy if r.arxiv_id == "hep-ph/9411242")
    assert "10<sup>31</sup>" in prelc.abstract


def test_arxiv_oai_pmh_real_sample() -> None:
    path = sample("arxiv_oai_pmh_listrecords_2013.xml")
    assert detect_format(path) == "arxiv-oai"
    (record,) = list(read_file(path))
    assert record.arxiv_id == "0801.3931" and record.published == date(2008, 1, 25)
    assert record.authors == ["T. Manos", "E. Athanassoula"]  # forenames + keyname
    assert record.published_doi == "10.1007/978-3-540-75826-6_11"
    assert "Poincaré (y,p<sub>y</sub>) surface" in record.abstract


# --- PubMed -----------------------------------------------------------------


def _pubmed(path: Path) -> list[PaperRecord]:
    with path.open("rb") as fh:
        return list(pubmed.iter_articles(fh))


def test_pubmed_traps() -> None:
    first, no_abstract, season, untitled = _pubmed(HERE / "pubmed_traps.xml")
    # ids from PubmedData/ArticleIdList only, never from the ReferenceList
    assert (first.pmid, first.doi, first.pmcid) == ("41000001", "10.1148/RYAI.250001", "PMC9900001")
    assert no_abstract.doi is None and no_abstract.pmcid is None
    assert (
        first.title
        == "Deep learning for <i>de novo</i> detection of lung nodules on CT<sub>low-dose</sub>"
    )
    assert first.abstract == (
        "Background: Nodules ≥4 mm are common; p &lt; 0.05 matters.\n\n"
        "Methods: We measured V\u0307O<sub>2</sub> and the gene <i>TERT</i> region across three sites.\n\n"
        "Results: AUC was 0.91."
    )
    assert "©" not in first.abstract
    assert first.authors == ["Anna K Müller", "Chidi Okafor", "Lung Imaging Consortium"]
    assert first.published == date(2025, 1, 14)  # ArticleDate wins over PubDate
    assert first.journal == "Radiology: Artificial intelligence"
    assert first.url == "https://pubmed.ncbi.nlm.nih.gov/41000001/"
    assert no_abstract.abstract == "" and no_abstract.published == date(2024, 12, 1)  # MedlineDate
    assert season.published == date(1990, 3, 1) and season.authors == ["TC Strekas"]
    assert untitled.title == ""  # rejected later, counted


def test_pubmed_dates() -> None:
    assert pubmed.medline_date("2020 Jan-Feb") == date(2020, 1, 1)
    assert pubmed.medline_date("1998 Dec-1999 Jan") == date(1998, 12, 1)
    assert pubmed.medline_date("2000 Spring-Summer") == date(2000, 3, 1)
    assert pubmed.medline_date("2019") == date(2019, 1, 1)


def test_pubmed_truncated_file_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="truncated"):
        _pubmed(HERE / "pubmed_truncated.xml")


def test_pubmed_error_in_a_200_answer() -> None:
    with pytest.raises(SourceError, match="Empty term"):
        pubmed.parse_esearch(
            b'{"esearchresult": {"ERROR": "Empty term and query_key - nothing todo"}}', label="x"
        )
    with pytest.raises(SourceError, match="error: Invalid query"):
        list(pubmed.iter_articles(b"<eFetchResult><ERROR>Invalid query</ERROR></eFetchResult>"))


def test_pubmed_real_samples() -> None:
    structured = _pubmed(sample("pubmed_efetch_structured_abstract.xml"))[0]
    assert "normal TSH (0.4-≤4.5 mIU/L)" in structured.abstract  # <u>&lt;</u> is ≤
    assert structured.abstract.startswith("Objectives: Animal studies")
    assert "\n\nMethods: " in structured.abstract and "\n\nConclusions: " in structured.abstract
    assert structured.title.endswith("pesticide applicators")
    mathml = _pubmed(sample("pubmed_efetch_mathml_collectivename.xml"))[0]
    assert mathml.authors[-1] == "Canadian Respiratory Research Network"
    assert "<sup>3</sup>He/<sup>129</sup>Xe MRI" in mathml.abstract
    assert mathml.pmid == "29963580" and mathml.pmcid == "PMC6022861"
    assert "mml" not in mathml.abstract
    tags = _pubmed(sample("pubmed_efetch_title_html_tags.xml"))[0]
    assert "at the <i>TERT</i> gene region" in tags.title
    season, plain = _pubmed(sample("pubmed_efetch_season_noabstract.xml"))
    assert season.abstract == "" and season.doi is None and season.published == date(1990, 4, 1)
    assert plain.published == date(1976, 9, 28)
    markup = _pubmed(sample("pubmed_efetch_inline_markup.xml"))[0]
    assert "LE<sub>min</sub>" in markup.abstract and "V\u0307O<sub>2max</sub>" in markup.abstract


def test_pubmed_esearch_real_error_shapes() -> None:
    import json

    shapes = json.loads(sample("pubmed_esearch_error_shapes.json").read_text())
    for body in shapes.values():
        with pytest.raises(SourceError, match="esearch error"):
            pubmed.parse_esearch(json.dumps(body).encode(), label="pubmed")


# --- medRxiv / bioRxiv ------------------------------------------------------


def test_medrxiv_highest_version_unpadded_dates_and_glued_headings() -> None:
    with (HERE / "medrxiv_page.json").open("rb") as fh:
        records = list(biorxiv.read_file(fh, label="page"))
    assert len(records) == 2
    triage = records[0]
    assert triage.extra["version"] == 2
    assert triage.published == date(2026, 6, 20)
    assert triage.title == "AI triage of head CT: a multicentre study"
    assert triage.abstract == (
        "Background: Head CT volumes grow.\n\nMethods: We trained a model. It ran on three sites.\n\n"
        "Results: Sensitivity was 0.95.\n\nConclusions: Triage works."
    )
    assert triage.authors == ["R. Verity", "L. C. Okell", "A. Ghani"]
    assert triage.published_doi == "10.1148/radiol.2026111"
    assert triage.source == "medrxiv" and triage.kind == "preprint"
    assert triage.url == "https://www.medrxiv.org/content/10.1101/2026.06.01.26300001v2"
    assert records[1].doi == "10.64898/2026.06.03.26300002"


def test_biorxiv_no_posts_found_and_empty_body_are_empty() -> None:
    assert biorxiv.parse_page((HERE / "biorxiv_not_found.json").read_bytes(), label="x") == ([], 0)
    assert biorxiv.parse_page(b"", label="x") == ([], 0)


def test_biorxiv_real_samples() -> None:
    with sample("biorxiv_details_doi_two_versions_recorded_trimmed.json").open("rb") as fh:
        (record,) = list(biorxiv.read_file(fh, label="x"))
    assert record.extra["version"] == 2 and "older v1" not in record.abstract
    assert "\n\nImportance: We show" in record.abstract
    with sample("medrxiv_details_doi_recorded_trimmed.json").open("rb") as fh:
        (med,) = list(biorxiv.read_file(fh, label="x"))
    assert med.abstract.startswith("Background: A range") and med.source == "medrxiv"
    with sample("biorxiv_pubs_interval_2026_trimmed.json").open("rb") as fh:
        (pub,) = list(biorxiv.read_file(fh, label="x"))
    assert pub.doi == "10.1101/2025.09.17.676679" and pub.published_doi == "10.1091/mbc.E25-09-0454"


# --- RSS --------------------------------------------------------------------


def test_arxiv_rss() -> None:
    assert detect_format(HERE / "arxiv_rss.xml") == "arxiv-rss"
    new, revised = read_file(HERE / "arxiv_rss.xml")
    assert (new.arxiv_id, new.source, new.kind) == ("2506.07001", "arxiv", "preprint")
    assert (
        new.abstract == "We pretrain on 10<sup>6</sup> knee slices and fine-tune with few labels."
    )
    assert new.authors == ["Mei Tanaka", "Jonas Berg", "Radiology AI Group"]
    assert new.extra["announce_type"] == "new" and new.published == date(2025, 6, 10)
    assert revised.arxiv_id == "2401.01234" and revised.extra["version"] == "v3"
    assert revised.extra["announce_type"] == "replace-cross"
    assert revised.abstract == "A revision."


def test_arxiv_rss_real_sample() -> None:
    records = rss.parse_feed(sample("arxiv_rss_atom_cs.AI.xml").read_bytes())
    assert len(records) == 4  # two "new", two "cross" kept of 86
    first = records[0]
    assert first.arxiv_id == "2508.13167" and first.source == "arxiv" and first.kind == "preprint"
    assert first.abstract.startswith("Recent advances in large language models")
    assert first.extra["announce_type"] == "new"
    assert first.authors[:2] == ["Weizhen Li", "Jianbo Lin"] and len(first.authors) == 30
    assert {r.extra["announce_type"] for r in records} == {"new", "cross"}


def test_generic_rss_feed() -> None:
    feed = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>J</title>
    <item><title>A journal paper.</title><link>https://j.example/1</link>
    <description>&lt;p&gt;Some &lt;em&gt;abstract&lt;/em&gt;.&lt;/p&gt;</description>
    <pubDate>Tue, 10 Jun 2025 08:00:00 GMT</pubDate><author>Ann Lee</author></item></channel></rss>"""
    (record,) = rss.parse_feed(feed, label="journal-rss")
    assert record.title == "A journal paper" and record.source == "journal-rss"
    assert record.abstract == "Some <i>abstract</i>." and record.published == date(2025, 6, 10)
    assert record.url == "https://j.example/1" and record.kind == "paper"


def test_html_page_is_not_a_feed() -> None:
    with pytest.raises(SourceHTTPError, match="HTML page"):
        rss.parse_feed((HERE / "error_page.xml").read_bytes())


# --- format detection -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("pubmed_traps.xml", "pubmed"),
        ("arxiv_legacy.xml", "arxiv"),
        ("arxiv_new.xml", "arxiv"),
        ("medrxiv_page.json", "biorxiv"),
        ("papers.jsonl", "jsonl"),
        ("papers.json", "json"),
        ("papers.csv", "csv"),
    ],
)
def test_format_detection(name: str, fmt: str) -> None:
    assert detect_format(HERE / name) == fmt


def test_format_detection_of_real_samples() -> None:
    assert detect_format(sample("arxiv_rss_atom_cs.AI.xml")) == "arxiv-rss"
    assert detect_format(sample("arxiv_api_atom_new_format_2025-11.xml")) == "arxiv"
    assert detect_format(sample("pubmed_efetch_season_noabstract.xml")) == "pubmed"
    with pytest.raises(UnknownFormatError, match="esearch answer holds only ids"):
        detect_format(sample("pubmed_esearch_usehistory.xml"))


def test_unknown_and_html_files_are_refused() -> None:
    with pytest.raises(UnknownFormatError, match="unknown format"):
        detect_format(HERE / "notes.txt")
    with pytest.raises(UnknownFormatError, match="HTML page"):
        detect_format(HERE / "error_page.xml")


def test_non_utf8_csv_is_refused_with_the_offset() -> None:
    with pytest.raises(ParseError, match=r"not UTF-8 text \(byte 0xe9 at offset 18\)"):
        list(read_file(HERE / "latin1.csv"))


def test_csv_with_semicolons_or_tabs(tmp_path: Path) -> None:
    for delimiter in (";", "\t"):
        path = tmp_path / "papers.csv"
        path.write_text(
            delimiter.join(["title", "authors", "published", "doi"])
            + "\n"
            + delimiter.join(["Excel export.", '"Doe, J.; Roe, R."', "2025-06-11", "10.5555/x"])
            + "\n",
            encoding="utf-8",
        )
        assert detect_format(path) == "csv"
        (record,) = list(read_file(path))
        assert (record.title, record.authors) == ("Excel export", ["J. Doe", "R. Roe"])


def test_slice_json_sanitizes_and_normalizes() -> None:
    (record,) = list(read_file(HERE / "papers.json"))
    assert record.title == "JSON paper with <i>markup</i>"
    assert record.pmid == "39999999" and record.source == "file"


# --- options ----------------------------------------------------------------


def test_each_kind_checks_its_options() -> None:
    good = SourceSettings(name="a", kind="arxiv", query="cat:eess.IV")  # type: ignore[call-arg]
    assert build_source(good).name == "a"
    typo = SourceSettings(name="pm", kind="pubmed", trem="x")  # type: ignore[call-arg]
    with pytest.raises(
        ConfigError, match=r"\[\[sources\]\] 'pm' \(kind pubmed\): unknown option 'trem'"
    ):
        build_source(typo)
    missing = SourceSettings(name="pm", kind="pubmed")
    with pytest.raises(ConfigError, match="option 'term' is required"):
        build_source(missing)
    unknown = SourceSettings(name="x", kind="scholar")
    with pytest.raises(ConfigError, match="unknown kind 'scholar'; use one of arxiv, biorxiv"):
        build_source(unknown)


def test_the_repository_config_is_valid() -> None:
    from newsletter.core.config import load_settings

    settings = load_settings(config=Path(__file__).resolve().parents[1] / "slice.toml")
    kinds = sorted(build_source(entry).kind for entry in settings.sources)
    assert kinds == ["arxiv", "medrxiv", "pubmed"]
