"""The run report: content of the HTML page and Markdown summary, bad input, and a real browser.

The inputs are built here in the shapes of the shared contracts (quality JSON, review JSONL,
selection summary, training outcome), with numbers drawn from a seeded generator; the tests
check that those numbers reach the page, formatted as the page formats them.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html as html_lib
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from labelloop import state
from labelloop.schemas import ML_USE_KEY, text_item_id
from labelloop.stages.write_report import ReportResult, write_report

LABELS = ["cat", "dog", "bird"]
ANNOTATORS = ["ann-a", "ann-b", "ann-c", "ann-d"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTION_IDS = (
    "next",
    "labeling",
    "gates",
    "agreement",
    "annotators",
    "disagreements",
    "active-learning",
    "model",
    "rounds",
)


# Inputs ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One run's input files and the values written into them."""

    root: Path
    quality: dict[str, Any]
    selection: dict[str, Any]
    outcome: dict[str, Any]
    review: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    items: list[dict[str, Any]]
    job: dict[str, Any] = dataclasses.field(default_factory=dict)
    min_labeled_count: int = 20
    min_agreement: float = 0.5
    run_id: str = "run-0002"

    @property
    def state_uri(self) -> str:
        return str(self.root / "state")

    def write(self) -> None:
        (self.root / "quality.json").write_text(json.dumps(self.quality), encoding="utf-8")
        (self.root / "selection.json").write_text(json.dumps(self.selection), encoding="utf-8")
        (self.root / "job.json").write_text(json.dumps(self.job), encoding="utf-8")
        for name, rows in (
            ("review.jsonl", self.review),
            ("annotations.jsonl", self.annotations),
            ("items.jsonl", self.items),
        ):
            text = "".join(json.dumps(r) + "\n" for r in rows)
            (self.root / name).write_text(text, encoding="utf-8")

    def report(self, **overrides: Any) -> tuple[ReportResult, str, str]:
        """Write the inputs, run the step, return its result, the HTML and the Markdown."""
        self.write()
        kwargs: dict[str, Any] = {
            "quality_uri": str(self.root / "quality.json"),
            "selection_uri": str(self.root / "selection.json"),
            "outcome": json.dumps(self.outcome),
            "state_uri": self.state_uri,
            "run_id": self.run_id,
            "min_labeled_count": self.min_labeled_count,
            "min_agreement": self.min_agreement,
            "html_uri": str(self.root / "out" / "report.html"),
            "markdown_uri": str(self.root / "out" / "summary.md"),
            "review_uri": str(self.root / "review.jsonl"),
            "items_uri": str(self.root / "items.jsonl"),
            "annotations_uri": str(self.root / "annotations.jsonl"),
            "job_uri": str(self.root / "job.json"),
        }
        kwargs.update(overrides)
        result = write_report(**kwargs)
        html = Path(kwargs["html_uri"]).read_text(encoding="utf-8")
        markdown = Path(kwargs["markdown_uri"]).read_text(encoding="utf-8")
        return result, html, markdown


def _png(path: Path, rng: np.random.Generator, size: int) -> str:
    pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(path)
    return str(path)


def make_run(root: Path, *, seed: int = 0) -> Run:
    """A full run: every contract key, tiny and large images, an inline text item."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True)
    tiny = [_png(images / f"tiny-{i}.png", rng, 8) for i in range(3)]
    large = _png(images / "large.png", rng, 300)
    text = "The quick brown fox jumps over the lazy dog near the riverbank at dawn."
    text_id = text_item_id(text)
    items = [
        {"imageGcsUri": uri, "dataItemResourceLabels": {ML_USE_KEY: "training"}}
        for uri in [*tiny, large]
    ] + [{"textContent": text, "dataItemResourceLabels": {ML_USE_KEY: "training"}}]
    k = len(ANNOTATORS)
    pair = rng.uniform(0.3, 0.95, (k, k))
    pair = np.round((pair + pair.T) / 2, 4)
    pair_json: list[list[float | None]] = pair.tolist()
    for i in range(k):
        pair_json[i][i] = None
    accuracy = np.round(rng.uniform(0.6, 0.95, k), 4)
    accuracy[-1] = 0.21
    table = []
    for i, name in enumerate(ANNOTATORS):
        confusion = rng.uniform(0, 1, (3, 3)) + np.eye(3) * 3
        table.append(
            {
                "annotator": name,
                "annotations": int(rng.integers(20, 60)),
                "accuracy": float(accuracy[i]),
                "gold_accuracy": float(np.round(rng.uniform(0.5, 1.0), 4)) if i % 2 == 0 else None,
                "gold_items": 6 if i % 2 == 0 else 0,
                "flagged": name == ANNOTATORS[-1],
                "flag_reason": "accuracy below 0.5" if name == ANNOTATORS[-1] else "",
                "confusion": (confusion / confusion.sum(axis=1, keepdims=True)).round(4).tolist(),
            }
        )
    agreement = float(np.round(rng.uniform(0.55, 0.8), 4))
    quality = {
        "label_count": int(rng.integers(40, 80)),
        "labeled_items": 90,
        "annotations": 270,
        "annotators": k,
        "agreement": agreement,
        "agreement_metric": "krippendorff_alpha",
        "agreement_ci": [round(agreement - 0.07, 4), round(agreement + 0.05, 4)],
        "all_agree_rate": 0.4,
        "ties": 3,
        "review_items": 5,
        "bad_records": 2,
        "min_confidence": 0.5,
        "consolidation_method": "ds",
        "task_type": "image_classification",
        "labels": LABELS,
        "metrics": {
            "krippendorff_alpha": agreement,
            "fleiss_kappa": round(agreement - 0.01, 4),
            "percent_agreement": 0.7123,
        },
        "per_class_agreement": {c: float(np.round(rng.uniform(0.2, 0.9), 4)) for c in LABELS},
        "pairwise": {
            "annotators": ANNOTATORS,
            "agreement": pair_json,
            "cohen_kappa": [[None if v is None else v - 0.1 for v in row] for row in pair_json],
            "overlap": [[10] * k for _ in range(k)],
        },
        "annotator_table": table,
    }
    review_ids = [*tiny, large, text_id]
    annotations = []
    review = []
    for index, item in enumerate(review_ids):
        answers = [
            {"annotator": a, "label": LABELS[int(rng.integers(0, 3))]} for a in ANNOTATORS[:3]
        ]
        annotations += [{"item": item, **ans} for ans in answers]
        row: dict[str, Any] = {
            "item": item,
            "reason": "tie" if index % 2 else "low confidence",
            "votes": {ans["label"]: 1 for ans in answers},
            "confidence": 0.3333,
        }
        # The first row leaves its answers out: the report finds them in the annotations file.
        if index:
            row["annotations"] = answers
        review.append(row)
    confusion = rng.integers(0, 5, (3, 3)) + np.eye(3, dtype=int) * 10
    outcome = {
        "trained": True,
        "gate": "open",
        "reason": "trained on 60 items",
        "accuracy": float(np.round(rng.uniform(0.7, 0.9), 4)),
        "train_items": 60,
        "test_items": 20,
        "labels": LABELS,
        "confusion_matrix": confusion.tolist(),
        # The evaluation-set learning curve: each arm's model on as many labels.
        "curve": [
            {"arm": "random", "labels": 20, "accuracy": 0.71, "ci": [0.6, 0.8]},
            {"arm": "active", "labels": 20, "accuracy": 0.78, "ci": [0.68, 0.86]},
        ],
    }
    selection = {
        "strategy": "least_confidence",
        "cold_start": False,
        "pool": 500,
        "selected": 90,
        "bad_records": 0,
        "items": [],
        "score_histogram": {
            "counts": rng.integers(0, 20, 10).tolist(),
            "edges": np.linspace(0, 1, 11).tolist(),
        },
        "predicted_class_mix": {c: int(rng.integers(5, 40)) for c in LABELS},
    }
    # The job record the labeling step writes, with Label Studio's summary.
    job = {
        "provider": "label_studio",
        "key": "3f9a2c1b44d0e7aa",
        "external_id": "7",
        "items": 90,
        "labelers_per_item": 3,
        "progress": {"labeled": 90, "total": 90},
        "complete": True,
        "skipped": 4,
        "provider_summary": {
            "title": "pets/images · round 2 · 2026-11-29 · 3f9a2c1b",
            "url": "http://127.0.0.1:8080/projects/7",
            "annotators": {
                name: {"answers": 60, "skipped": i, "seconds": 60 * (3.0 + i)}
                for i, name in enumerate(ANNOTATORS)
            },
        },
    }
    run = Run(
        root=root,
        quality=quality,
        selection=selection,
        outcome=outcome,
        review=review,
        annotations=annotations,
        items=items,
        job=job,
    )
    # An earlier round in the state: the trend plot needs more than one point.
    earlier = {
        "run_id": "run-0001",
        "finished_at": "2020-01-01T00:00:00+00:00",
        "label_count": 30,
        "labeled_items": 45,
        "agreement": 0.61,
        "trained": True,
        "reason": "trained on 30 items",
        "accuracy": 0.6543,
        "train_items": 30,
        "test_items": 10,
        "curve": [
            {"arm": "random", "labels": 8, "accuracy": 0.55, "ci": [0.4, 0.7]},
            {"arm": "active", "labels": 8, "accuracy": 0.6, "ci": [0.45, 0.74]},
        ],
    }
    rounds = root / "state" / state.ROUNDS
    rounds.mkdir(parents=True)
    (rounds / "run-0001.json").write_text(json.dumps(earlier), encoding="utf-8")
    return run


def closed_run(root: Path) -> Run:
    """A run whose count gate stayed closed (the outcome has no model)."""
    run = make_run(root)
    run.outcome = {
        "trained": False,
        "gate": "label_count",
        "reason": f"{run.quality['label_count']} of 500 labels",
        "value": run.quality["label_count"],
        "threshold": 500,
        "metric": "label_count",
    }
    run.min_labeled_count = 500
    return run


# Parsing --------------------------------------------------------------------------------------


class Page(HTMLParser):
    """Collects what the tests look at: sections, images, scripts, links, text, table rows."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[dict[str, str]] = []
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.text_parts: list[str] = []
        self.row_classes: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag == "section":
            self.sections.append(attributes.get("id", ""))
        if tag == "img":
            self.images.append(attributes)
        if tag == "tr" and attributes.get("class"):
            self.row_classes.append(attributes["class"])
        for key in ("src", "href", "action", "srcset", "poster", "data"):
            if key in attributes:
                self.urls.append(attributes[key])

    def handle_data(self, data: str) -> None:
        self.text_parts.append(data)

    @property
    def text(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.text_parts))


def decode_data_uri(uri: str) -> tuple[str, bytes]:
    match = re.fullmatch(r"data:(image/[a-z]+);base64,([A-Za-z0-9+/=]+)", uri)
    assert match, uri[:60]
    return match.group(1), base64.b64decode(match.group(2), validate=True)


def section_text(html: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    assert match, anchor
    return Page(match.group(1)).text


@dataclasses.dataclass
class Rendered:
    run: Run
    result: ReportResult
    html: str
    markdown: str


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The full run rendered once; the tests below only read it."""
    run = make_run(tmp_path_factory.mktemp("full"))
    result, html, markdown = run.report()
    return Rendered(run, result, html, markdown)


# Content --------------------------------------------------------------------------------------


def test_full_report_has_every_section_and_the_gate_numbers(full: Rendered) -> None:
    run = full.run
    result = full.result
    html = full.html
    page = Page(html)
    assert page.sections == list(SECTION_IDS)
    q = run.quality
    gates = section_text(html, "gates")
    assert f"{q['label_count']} labels of {run.min_labeled_count} needed" in gates
    assert f"{q['agreement']:.3f} krippendorff_alpha, min {run.min_agreement:.3f}" in gates
    lo, hi = q["agreement_ci"]
    assert f"95% bootstrap CI [{lo:.3f}, {hi:.3f}]" in gates
    assert gates.count("open") == 2
    assert f"{q['annotations']:,}" in gates
    assert result.trained
    assert result.metrics["label_count"] == q["label_count"]
    assert result.metrics["krippendorff_alpha_ci_low"] == pytest.approx(lo)
    assert result.metrics["flagged_annotators"] == 1
    assert result.confusion_labels == LABELS
    assert result.confusion_matrix == run.outcome["confusion_matrix"]


def test_agreement_and_annotator_sections_show_the_quality_numbers(full: Rendered) -> None:
    run = full.run
    html = full.html
    agreement = section_text(html, "agreement")
    for name, value in run.quality["metrics"].items():
        assert f"{name} {value:.3f}" in agreement or f"{name} (gate) {value:.3f}" in agreement
    annotators = section_text(html, "annotators")
    for row in run.quality["annotator_table"]:
        assert row["annotator"] in annotators
        assert f"{row['accuracy']:.3f}" in annotators
        if row["gold_accuracy"] is not None:
            assert f"{row['gold_accuracy']:.3f} ({row['gold_items']} gold)" in annotators
    assert "flagged accuracy below 0.5" in annotators
    assert "1 flagged" in annotators
    assert Page(html).row_classes.count("flagged") == 1


def test_disagreements_show_thumbnails_snippets_and_every_answer(full: Rendered) -> None:
    run = full.run
    html = full.html
    match = re.search(r'<section id="disagreements">(.*?)</section>', html, re.S)
    assert match
    section = Page(match.group(1))
    # Four images reviewed: each has an embedded thumbnail; the tiny ones are drawn pixelated.
    assert len(section.images) == 4
    assert sum("px" in img.get("class", "") for img in section.images) == 3
    for img in section.images:
        mime, data = decode_data_uri(img["src"])
        assert mime == "image/png"
        with Image.open(io.BytesIO(data)) as thumb:
            assert max(thumb.size) <= 128
    assert "The quick brown fox jumps over the lazy dog" in section.text
    # Every annotator's answer, including the row whose answers came from the annotations file.
    for row in run.annotations:
        assert f"{row['annotator']} {row['label']}" in section.text
    assert "5 items sent to review (low confidence: 3, tie: 2)" in section.text


def test_active_learning_model_and_rounds(full: Rendered) -> None:
    run = full.run
    html = full.html
    al = section_text(html, "active-learning")
    assert "least_confidence" in al
    assert "500" in al
    model = section_text(html, "model")
    assert f"{run.outcome['accuracy']:.3f} held-out accuracy" in model
    cm = np.array(run.outcome["confusion_matrix"], dtype=float)
    recall = np.diag(cm) / cm.sum(axis=1)
    precision = np.diag(cm) / cm.sum(axis=0)
    for label, p, r in zip(LABELS, precision, recall, strict=True):
        assert f"{label} {p:.2f} {r:.2f}" in model
    # The learning curve is a plot of both arms across rounds, its numbers a CSV link.
    match = re.search(r'<section id="model">(.*?)</section>', html, re.S)
    assert match
    section = Page(match.group(1))
    (curve,) = [i for i in section.images if i["alt"].startswith("Learning curve")]
    assert decode_data_uri(curve["src"])[0] == "image/png"
    assert "<table><thead><tr><th>arm" not in match.group(1)  # no longer a table
    (link,) = re.findall(r'download="learning-curve.csv" href="([^"]+)"', match.group(1))
    text = base64.b64decode(link.split(",", 1)[1]).decode()
    assert list(csv.reader(io.StringIO(text))) == [
        ["round", "arm", "labels", "accuracy", "ci_low", "ci_high"],
        ["1", "random", "8", "0.55", "0.4", "0.7"],
        ["1", "active", "8", "0.6", "0.45", "0.74"],
        ["2", "random", "20", "0.71", "0.6", "0.8"],
        ["2", "active", "20", "0.78", "0.68", "0.86"],
    ]
    rounds = section_text(html, "rounds")
    assert "r1" in rounds
    assert "r2 (this run)" in rounds
    assert "0.654" in rounds  # the earlier round's accuracy
    assert "40" in rounds  # the earlier round's labels used (30 train + 10 test)
    record = json.loads(
        (Path(run.state_uri) / state.ROUNDS / f"{run.run_id}.json").read_text(encoding="utf-8")
    )
    assert record["labels_used"] == 80
    assert record["accuracy"] == run.outcome["accuracy"]
    assert record["agreement"] == run.quality["agreement"]


def test_page_is_self_contained(full: Rendered) -> None:
    html = full.html
    page = Page(html)
    assert "script" not in page.tags
    assert "link" not in page.tags
    assert "iframe" not in page.tags
    # The one link out is to the labeling project: a link people click, never a fetch.
    project_url = full.run.job["provider_summary"]["url"]
    assert re.findall(r'<a href="(http[^"]*)"', html) == [project_url]
    for url in page.urls:
        assert url.startswith(("data:", "#")) or url == project_url, url[:80]
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html)
    assert "@import" not in html
    # Every plot is a PNG that decodes.
    plots = [img for img in page.images if "class" not in img and img["src"]]
    assert len(plots) >= 8
    for img in page.images:
        mime, data = decode_data_uri(img["src"])
        if mime == "image/png":
            assert data.startswith(PNG_MAGIC)
        with Image.open(io.BytesIO(data)) as decoded:
            decoded.verify()


def test_markdown_summary(full: Rendered) -> None:
    run = full.run
    markdown = full.markdown
    for heading in ("## Gates", "## Agreement", "## Annotators", "## Disagreements"):
        assert heading in markdown
    for heading in ("## Active learning", "## Model", "## Across rounds"):
        assert heading in markdown
    q = run.quality
    lo, hi = q["agreement_ci"]
    assert (
        f"| Annotators agree (krippendorff_alpha) | {q['agreement']:.3f} | "
        f"{run.min_agreement:.3f} | [{lo:.3f}, {hi:.3f}] | open |"
    ) in markdown
    assert f"| Enough labels | {q['label_count']} | {run.min_labeled_count} |" in markdown
    assert "flagged: accuracy below 0.5" in markdown
    assert "data:image" not in markdown


def test_closed_gate_says_why(tmp_path: Path) -> None:
    run = closed_run(tmp_path)
    result, html, markdown = run.report()
    assert not result.trained
    assert result.confusion_matrix == []
    assert "accuracy" not in result.metrics
    gates = section_text(html, "gates")
    assert "closed" in gates
    assert "not reached" in gates
    reason = run.outcome["reason"]
    assert f"No model this round. Gate closed: {reason}." in Page(html).text
    assert f"No model this round: {reason}." in section_text(html, "model")
    assert "No model this round" in markdown


def test_skeleton_quality_keys_degrade_gracefully(tmp_path: Path) -> None:
    """The quality JSON with only the first keys (before the contract's extensions)."""
    run = make_run(tmp_path)
    keep = ("label_count", "labeled_items", "annotations", "annotators", "agreement")
    run.quality = {k: run.quality[k] for k in keep}
    for row in run.review:
        row.pop("confidence")
    _, html, markdown = run.report(items_uri="", annotations_uri="", selection_uri="")
    page = Page(html)
    assert page.sections == list(SECTION_IDS)
    assert "Per-class agreement is not in the quality artifact." in page.text
    assert "The per-annotator table is not in the quality artifact." in page.text
    assert "The selection summary is missing." in page.text
    assert "text not in the dataset artifact" in page.text
    assert "n/a" in section_text(html, "gates")
    assert "## Gates" in markdown


def test_unreadable_review_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    run.write()
    with (tmp_path / "review.jsonl").open("a", encoding="utf-8") as fh:
        fh.write("{not json\n")
    run.write = lambda: None  # type: ignore[method-assign]
    _, html, _ = run.report()
    assert "1 unreadable line(s) in the report's inputs were skipped." in Page(html).text


def test_malformed_outcome_is_an_input_error(tmp_path: Path) -> None:
    from labelloop.errors import InputError

    run = make_run(tmp_path)
    run.write()
    with pytest.raises(InputError, match="field 'outcome'"):
        run.report(outcome="{oops")


# Bad input ------------------------------------------------------------------------------------


def zero_label_run(root: Path) -> Run:
    run = closed_run(root)
    run.quality.update(
        label_count=0,
        labeled_items=0,
        annotations=0,
        annotators=0,
        agreement=None,
        agreement_ci=None,
        metrics={"krippendorff_alpha": None},
        per_class_agreement={},
        pairwise={"annotators": [], "agreement": [], "cohen_kappa": [], "overlap": []},
        annotator_table=[],
        review_items=0,
        ties=0,
        all_agree_rate=None,
        bad_records=0,
    )
    run.outcome["reason"] = "0 of 500 labels"
    run.review, run.annotations = [], []
    return run


def test_zero_labels_still_yields_a_page_that_says_so(tmp_path: Path) -> None:
    run = zero_label_run(tmp_path)
    result, html, markdown = run.report()
    page = Page(html)
    assert page.sections == list(SECTION_IDS)
    assert "Zero labels: no annotations were collected this round." in page.text
    assert "No annotations this round: there is no agreement to measure." in page.text
    assert "No items were labeled, so none were sent to review." in page.text
    assert "No annotators this round." in page.text
    assert "Agreement could not be measured." in page.text  # never an invented 0
    assert result.label_count == 0
    assert "krippendorff_alpha" not in result.metrics
    assert "Zero labels" in markdown


def test_single_annotator_page_says_so(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    only = ANNOTATORS[0]
    run.quality.update(
        annotators=1,
        agreement=None,
        agreement_ci=None,
        metrics={"krippendorff_alpha": None, "percent_agreement": None},
        pairwise={"annotators": [only], "agreement": [[None]], "cohen_kappa": [[None]]},
        annotator_table=run.quality["annotator_table"][:1],
    )
    for row in run.review:
        row["annotations"] = row.get("annotations", [])[:1]
    _, html, _ = run.report()
    page = Page(html)
    assert "A single annotator: agreement between annotators cannot be measured." in page.text
    assert "Pairwise agreement needs at least two annotators." in page.text
    assert "1 annotator, none flagged." in page.text


def test_one_class_page_says_so(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    table = run.quality["annotator_table"]
    for row in table:
        row["confusion"] = [[1.0]]
    run.quality.update(
        labels=["cat"],
        agreement=None,
        agreement_ci=None,
        per_class_agreement={"cat": None},
        annotator_table=table,
    )
    run.outcome = {
        "trained": False,
        "gate": "agreement",
        "reason": "krippendorff_alpha 0.000 < 0.500",
    }
    _, html, _ = run.report()
    page = Page(html)
    assert "One class only: every answer is the same class; agreement is undefined." in page.text
    assert "chance-corrected agreement (alpha, kappa) is undefined" in page.text
    assert "Gate closed: krippendorff_alpha 0.000 < 0.500." in page.text


def test_report_without_state_still_shows_this_round(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    _, html, _ = run.report(state_uri="")
    rounds = section_text(html, "rounds")
    assert "1 round(s) recorded" in rounds
    assert "r1 (this run)" in rounds


def test_large_runs_are_capped_and_say_what_they_left_out(tmp_path: Path) -> None:
    from labelloop.report import sections as page

    run = make_run(tmp_path)
    rng = np.random.default_rng(7)
    n_classes = page.MAX_CLASSES_PLOTTED + 5
    n_annotators = page.ANNOTATOR_ROWS_OPEN + 5
    n_review = page.MAX_REVIEW_ITEMS + 10
    labels = [f"c{i}" for i in range(n_classes)]
    workers = [f"w{i}" for i in range(n_annotators)]
    run.quality.update(
        labels=labels,
        per_class_agreement={c: float(rng.uniform()) for c in labels},
        annotator_table=[
            {
                "annotator": w,
                "annotations": 5,
                "accuracy": float(rng.uniform()),
                "flagged": False,
                "confusion": rng.uniform(0, 1, (n_classes, n_classes)).tolist(),
            }
            for w in workers
        ],
    )
    run.selection["predicted_class_mix"] = {c: int(rng.integers(0, 9)) for c in labels}
    run.review = [dict(run.review[1 + i % 3]) for i in range(n_review)]
    _, html, _ = run.report()
    text = Page(html).text
    assert (
        f"The {page.MAX_CLASSES_PLOTTED} classes with the lowest agreement of {n_classes}." in text
    )
    assert f"The {page.MAX_CLASSES_PLOTTED} most frequent of {n_classes} classes." in text
    assert "Show 5 more" in text  # annotator rows beyond the open ones
    more = n_annotators - page.MAX_ANNOTATOR_MATRICES
    assert f"{more} more annotator(s) not drawn." in text
    assert f"Show {page.MAX_REVIEW_ITEMS - page.REVIEW_ITEMS_OPEN} more" in text
    assert f"{n_review - page.MAX_REVIEW_ITEMS} more item(s) are in the review artifact." in text
    cards = section_text(html, "disagreements").count("confidence 0.33")
    assert cards == page.MAX_REVIEW_ITEMS


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@pytest.mark.filterwarnings("ignore:Glyph:UserWarning", "ignore:Tight layout:UserWarning")
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_mix_of_valid_and_junk_values_still_renders(
    full: Rendered, data: st.DataObject
) -> None:
    """Whatever the upstream JSON holds (nulls, NaN, wrong types), the page renders whole."""
    from labelloop.report.data import ReportData
    from labelloop.report.page import render_html
    from labelloop.report.summary import render_markdown

    def mangle(source: dict[str, Any]) -> dict[str, Any]:
        keys = sorted(source)
        junk = data.draw(st.sets(st.sampled_from(keys), max_size=len(keys)))
        return {k: data.draw(JSON) if k in junk else v for k, v in source.items()}

    report = ReportData(
        run_id="fuzz",
        quality=mangle(full.run.quality),
        selection=mangle(full.run.selection),
        outcome=mangle(full.run.outcome),
        review=[mangle(r) | {"item": r["item"]} for r in full.run.review[1:3]],
        items={},
        rounds=[mangle(full.run.outcome)],
        min_labeled_count=10,
        min_agreement=0.5,
    )
    # Without a job record there is no labeling section; every other section renders.
    assert Page(render_html(report)).sections == [s for s in SECTION_IDS if s != "labeling"]
    assert "## Gates" in render_markdown(report)


# A real browser -------------------------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


CHROMIUM = _chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's package)"
)


def open_in_chromium(html_path: Path, screenshot: Path, *, height: int = 2400) -> str:
    """Render the page headless; return chromium's stderr (console messages land there)."""
    assert CHROMIUM is not None
    # Headless Chromium now and then aborts at start-up on a loaded machine (a zygote pipe
    # error, signal 6) before loading anything: start it again, up to three times.
    for _ in range(3):
        done = _run_chromium(html_path, screenshot, height=height)
        if done.returncode >= 0:
            break
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def _run_chromium(html_path: Path, screenshot: Path, *, height: int) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={screenshot}",
                f"--window-size=1280,{height}",
                "--enable-logging=stderr",
                "--v=0",
                html_path.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "HOME": profile},
        )


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def assert_not_blank(screenshot: Path) -> None:
    with Image.open(screenshot) as shot:
        pixels = np.asarray(shot.convert("RGB"), dtype=np.int16)
    background = pixels[-1, -1]
    differs = np.abs(pixels - background).sum(axis=2) > 30
    assert differs.mean() > 0.05, "the page rendered (nearly) blank"
    rgb = pixels.astype(np.int32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    assert len(np.unique(packed)) > 50, "too few colours: no plots or thumbnails drawn"


@needs_chromium
def test_console_check_catches_a_page_that_fetches(tmp_path: Path) -> None:
    """The harness itself: a fetch under the page's CSP is a console message; blank is caught."""
    from labelloop.report.page import CSP

    bad = tmp_path / "bad.html"
    bad.write_text(
        f'<!doctype html><meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<h1>x</h1><img src="http://127.0.0.1:9/x.png">',
        encoding="utf-8",
    )
    stderr = open_in_chromium(bad, tmp_path / "bad.png", height=300)
    assert any("127.0.0.1:9" in m for m in console_messages(stderr))
    # And the blank-render check fails on a page that is all background.
    with pytest.raises(AssertionError, match="blank"):
        assert_not_blank(tmp_path / "bad.png")


def check_in_chromium(page: Path, screenshot: Path) -> None:
    stderr = open_in_chromium(page, screenshot)
    assert console_messages(stderr) == []
    with Image.open(screenshot) as shot:
        assert shot.size == (1280, 2400)
    assert_not_blank(screenshot)


@needs_chromium
def test_full_page_renders_in_chromium_without_console_errors(
    full: Rendered, tmp_path: Path
) -> None:
    check_in_chromium(full.run.root / "out" / "report.html", tmp_path / "screenshot.png")


@needs_chromium
def test_zero_label_page_renders_in_chromium_without_console_errors(tmp_path: Path) -> None:
    zero_label_run(tmp_path).report()
    check_in_chromium(tmp_path / "out" / "report.html", tmp_path / "screenshot.png")


@needs_chromium
def test_chromium_parses_the_page_as_html(full: Rendered) -> None:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--dump-dom",
                (full.run.root / "out" / "report.html").resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env={**os.environ, "HOME": profile},
        ).stdout
    assert Page(dom).sections == list(SECTION_IDS)
    assert "<script" not in dom


# gs:// ----------------------------------------------------------------------------------------


@pytest.mark.server
def test_report_reads_and_writes_gcs(gcs_bucket: str, tmp_path: Path) -> None:
    """Inputs, thumbnails, state and outputs all on gs://: the step only sees URIs."""
    from labelloop import storage

    run = make_run(tmp_path)
    run.write()
    image = Path(run.review[1]["item"])
    image_uri = f"{gcs_bucket}/images/{image.name}"
    storage.write_bytes(image_uri, image.read_bytes())
    text_uri = f"{gcs_bucket}/texts/note.txt"
    storage.write_text(text_uri, "A text file stored on GCS, long enough to preview.")
    review = [
        {**run.review[1], "item": image_uri},
        {**run.review[2], "item": text_uri},
        {**run.review[3], "item": f"{gcs_bucket}/images/missing.png"},
    ]
    inputs = {
        "quality": json.dumps(run.quality),
        "selection": json.dumps(run.selection),
        "review": "".join(json.dumps(r) + "\n" for r in review),
    }
    for name, text in inputs.items():
        storage.write_text(f"{gcs_bucket}/in/{name}", text)
    result = write_report(
        quality_uri=f"{gcs_bucket}/in/quality",
        selection_uri=f"{gcs_bucket}/in/selection",
        outcome=json.dumps(run.outcome),
        state_uri=f"{gcs_bucket}/state",
        run_id="gcs-run",
        min_labeled_count=run.min_labeled_count,
        min_agreement=run.min_agreement,
        html_uri=f"{gcs_bucket}/out/report.html",
        markdown_uri=f"{gcs_bucket}/out/summary.md",
        review_uri=f"{gcs_bucket}/in/review",
    )
    assert result.trained
    html = storage.read_text(f"{gcs_bucket}/out/report.html")
    match = re.search(r'<section id="disagreements">(.*?)</section>', html, re.S)
    assert match
    section = Page(match.group(1))
    assert len(section.images) == 1
    _, data = decode_data_uri(section.images[0]["src"])
    assert data.startswith(PNG_MAGIC)
    assert "A text file stored on GCS" in section.text
    assert "image not readable" in section.text
    assert storage.exists(f"{gcs_bucket}/state/{state.ROUNDS}/gcs-run.json")
    assert "## Gates" in storage.read_text(f"{gcs_bucket}/out/summary.md")


# Templates ------------------------------------------------------------------------------------

HOSTILE = '<script>alert("x")</script>&"\'<img src=x onerror=alert(1)>'


def test_user_data_is_escaped_everywhere(tmp_path: Path) -> None:
    """Item ids, annotator names, labels, reasons, snippets are user data: none becomes markup."""
    run = make_run(tmp_path)
    hostile_name = f"ann{HOSTILE}"
    run.quality["annotator_table"][0]["annotator"] = hostile_name
    run.quality["annotator_table"][-1]["flag_reason"] = f"reason{HOSTILE}"
    run.quality["metrics"][f"metric{HOSTILE}"] = 0.5
    run.quality["task_type"] = f"task{HOSTILE}"
    run.review[1]["annotations"][0]["annotator"] = hostile_name
    run.review[1]["reason"] = f"why{HOSTILE}"
    hostile_text = f"text {HOSTILE}"
    run.items.append({"textContent": hostile_text})
    run.review.append({"item": text_item_id(hostile_text), "reason": "tie", "votes": {HOSTILE: 2}})
    run.outcome["reason"] = f"trained{HOSTILE}"
    run.run_id = f"run{HOSTILE}"
    _, html, _ = run.report()
    page = Page(html)
    assert "script" not in page.tags
    assert [img for img in page.images if not img["src"].startswith("data:")] == []
    assert "<script>" not in html
    assert "onerror=alert(1)>" not in html.replace("&lt;img src=x onerror=alert(1)&gt;", "")
    text = page.text
    for shown in (hostile_name, f"reason{HOSTILE}", f"why{HOSTILE}", hostile_text, HOSTILE):
        assert shown in text
    assert page.sections == list(SECTION_IDS)


def test_templates_ship_in_the_wheel(tmp_path: Path) -> None:
    """Every template under src/ is package data of the built wheel (what the image installs)."""
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[1]
    templates = root / "src" / "labelloop" / "report" / "templates"
    wanted = {
        "labelloop/report/templates/" + p.relative_to(templates).as_posix()
        for p in templates.rglob("*")
        if p.is_file()
    }
    assert any(w.endswith("page.html.j2") for w in wanted)
    tree = tmp_path / "tree"
    shutil.copytree(root / "src", tree / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, tree / name)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(tree)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("labelloop-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    assert wanted <= shipped, sorted(wanted - shipped)


# What to do next, the labeling job, people's time ---------------------------------------------


def _steps(html: str) -> list[str]:
    match = re.search(r'<ol class="steps">(.*?)</ol>', html, re.S)
    assert match
    return [Page(li).text.strip() for li in re.findall(r"<li>(.*?)</li>", match.group(1), re.S)]


def test_next_steps_follow_the_recorded_count_gate_and_the_open_job(tmp_path: Path) -> None:
    run = closed_run(tmp_path)
    run.job.update(complete=False, progress={"labeled": 12, "total": 90})
    _, html, markdown = run.report()
    steps = _steps(html)
    title = run.job["provider_summary"]["title"]
    url = run.job["provider_summary"]["url"]
    assert steps[0].startswith("Wait for the open labeling job. 12 of 90 items")
    assert f"“{title}” ({url})" in steps[0]
    have = run.quality["label_count"]
    unsure = run.quality["labeled_items"] - have
    assert steps[1].startswith(f"Add a labeler per item, or gold questions. {unsure} labeled")
    assert steps[2].startswith(f"Or lower the count threshold. min_labeled_count: {have} would")
    assert f"{have / 500:.0%} of the labels you asked for" in steps[2]
    # Settings render as code, from text that was escaped first.
    assert f"<code>min_labeled_count: {have}</code>" in html
    labeling = section_text(html, "labeling")
    assert "open: people are still labeling" in labeling
    assert "12 / 90 items fully labeled" in labeling
    assert "## What to do next" in markdown
    assert "Wait for the open labeling job" in markdown


def test_next_steps_for_a_closed_agreement_gate_read_the_recorded_decision(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    # The recorded decision says the agreement gate closed at 0.41 < 0.70, whatever the
    # quality JSON's own number: the report does not evaluate the rule again.
    run.outcome = {
        "trained": False,
        "gate": "agreement",
        "reason": "krippendorff_alpha 0.410 < 0.700",
        "value": 0.41,
        "threshold": 0.7,
        "metric": "krippendorff_alpha",
    }
    run.quality["agreement_without_flagged"] = 0.74
    _, html, _ = run.report()
    steps = _steps(html)
    flagged = run.quality["annotator_table"][-1]
    assert steps[0] == (
        f"Drop or retrain the flagged annotator. {flagged['annotator']}: accuracy below 0.5."
        " Without them, krippendorff_alpha would be 0.740. Remove them from the project (or"
        " give them feedback) and run again."
    )
    assert steps[1].startswith("Add gold questions.")
    per_class = run.quality["per_class_agreement"]
    weakest = sorted(per_class, key=per_class.get)[:2]
    assert all(f"“{c}” ({per_class[c]:.2f})" in steps[2] for c in weakest)
    assert steps[3].startswith("Or lower the agreement threshold. min_agreement: 0.41 (now 0.70)")
    assert "only 40% of items had every annotator agree" in steps[3]


def test_next_steps_after_training_and_the_labeling_job_section(full: Rendered) -> None:
    steps = _steps(full.html)
    assert steps[0].startswith("Run the next round.")
    assert steps[1].startswith("Look at the review queue. 5 items went to review")
    assert steps[2].startswith("Check the flagged annotators. ann-d:")
    labeling = section_text(full.html, "labeling")
    summary = full.run.job["provider_summary"]
    assert summary["title"] in labeling
    assert summary["url"] in labeling
    assert "90 / 90 items fully labeled" in labeling
    assert "4 skipped answers" in labeling


def test_annotator_time_throughput_skips_and_csv_exports(full: Rendered) -> None:
    annotators = section_text(full.html, "annotators")
    # ann-b: 60 answers in 240 s (lead_time), 1 skipped.
    assert "4.0 s 900 1" in annotators
    assert "3.0 s 1,200 0" in annotators
    links = dict(re.findall(r'download="([^"]+)" href="([^"]+)"', full.html))
    assert set(links) == {"annotators.csv", "review-queue.csv", "learning-curve.csv"}
    mime, data = links["annotators.csv"].split(";base64,")
    assert mime == "data:text/csv;charset=utf-8"
    rows = list(csv.reader(io.StringIO(base64.b64decode(data).decode("utf-8"))))
    assert rows[0][:3] == ["annotator", "annotations", "estimated accuracy"]
    assert [r[0] for r in rows[1:]] == ANNOTATORS
    assert rows[-1][-2:] == ["yes", "accuracy below 0.5"]
    review = list(
        csv.reader(io.StringIO(base64.b64decode(links["review-queue.csv"].split(",")[1]).decode()))
    )
    assert len(review) == 1 + len(full.run.review)
    assert review[2][3].startswith("ann-a: ")


def test_metric_names_explained_and_honest_text(tmp_path: Path) -> None:
    run = zero_label_run(tmp_path)
    run.selection.update(cold_start=True, strategy="k_center")
    for row in run.quality.get("annotator_table", []):
        row["gold_accuracy"] = None
    _, html, _ = run.report()
    gates = section_text(html, "gates")
    assert "krippendorff_alpha: agreement beyond chance" in gates
    al = section_text(html, "active-learning")
    assert "k-center diversity sampling" in al
    assert "random" not in al
    model = section_text(html, "model")
    assert "only when both gates open" in model
    assert "The model trained on" not in model


def test_no_gold_column_when_nobody_answered_gold(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    for row in run.quality["annotator_table"]:
        row["gold_accuracy"], row["gold_items"] = None, 0
    _, html, _ = run.report()
    annotators = section_text(html, "annotators")
    assert "gold score" not in annotators
    assert "the gold score" not in annotators


def test_gemini_routing_threshold_precision_and_cost(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    run.job = {
        "provider": "gemini_then_human",
        "key": "k",
        "external_id": "{}",
        "items": 90,
        "labelers_per_item": 1,
        "progress": {"labeled": 90, "total": 90},
        "complete": True,
        "skipped": 0,
        "provider_summary": {
            "calibration": {
                "threshold": 0.9123,
                "source": "gs://b/human.jsonl",
                "sample": 200,
                "accepted": 150,
                "precision": 0.9667,
            },
            "auto_accepted": 61,
            "to_people": 29,
            "gemini": {"model": "gemini-2.5-flash", "cost_usd": 0.01234},
            "human": {"title": "t · round 1", "url": "http://127.0.0.1:1/projects/2"},
        },
    }
    _, html, markdown = run.report()
    labeling = section_text(html, "labeling")
    for text in (
        "0.912 auto-accept threshold",
        "96.7% precision on 200 calibration items",
        "61 labeled by Gemini",
        "29 sent to people",
        "$0.0123 estimated cost",
        "http://127.0.0.1:1/projects/2",
    ):
        assert text in labeling, text
    assert "## Labeling job" in markdown
    for text in ("auto-accept threshold", "| 0.912 |", "estimated cost", "| $0.0123 |"):
        assert text in markdown, text


# Open jobs from the ledger, and the gate meters in a real browser ---------------------------


def _ledger_with_open_jobs(state_uri: str) -> None:
    from labelloop.ledger import Ledger

    led = Ledger.load(state_uri)
    for key, run_id, items in (("oldjob", "run-0001", 6), ("newjob", "run-0002", 4)):
        led.append(
            "queue", run=run_id, job=key, provider="label_studio", task_type="image_classification",
            labels=["a", "b"], labelers_per_item=2,
            items=[{"id": f"{key}-{n}"} for n in range(items)],
        )  # fmt: skip
    led.merge_annotations("oldjob", [{"item": "oldjob-0", "annotator": "x", "label": "a"}])
    led.append(
        "collect", run="run-0002", job="oldjob", labeled=["oldjob-0"], annotations=1,
        progress={"labeled": 1, "total": 6},
    )  # fmt: skip
    led.compact()


def test_report_lists_the_ledgers_open_jobs_and_the_state_command(tmp_path: Path) -> None:
    run = closed_run(tmp_path)
    run.job.update(complete=False, progress={"labeled": 0, "total": 4})
    _ledger_with_open_jobs(run.state_uri)
    _, html, markdown = run.report()
    labeling = section_text(html, "labeling")
    assert "Items in the ledger: 0 in the pool, 9 queued in open jobs, 1 labeled." in labeling
    rows = re.findall(r"<tr><td>label_studio</td>(.*?)</tr>", html, re.S)
    cells = [Page(r).text.split() for r in rows]
    assert cells == [["oldjob", "run-0001", "0", "min", "5", "1", "/", "6"],
                     ["newjob", "run-0002", "0", "min", "4", "0", "/", "4"]]  # fmt: skip
    command = f"labelloop state {run.state_uri}"
    assert f"<code>{command}</code>" in html
    wait = _steps(html)[0]
    assert wait.startswith("Wait for the open labeling job. 0 of 4 items")
    assert "1 other open job also waits." in wait
    assert f"{command} lists them" in wait
    assert "Open jobs in the ledger:" in markdown
    assert f"`{command}`" in markdown
    # This round's job is done but an earlier round's is not: still say what waits, and where.
    run.job.update(complete=True, progress={"labeled": 4, "total": 4})
    _, html, _ = run.report()
    assert _steps(html)[0].startswith(
        "Let people finish the open jobs. 9 items still wait in 2 open jobs"
    )


GEOMETRY = """<script>
addEventListener("load", () => {
  const out = [...document.querySelectorAll(".gate")].map(g => {
    const box = e => e ? e.getBoundingClientRect() : null;
    const [label, ci, mark] = [box(g.querySelector(".mark span")), box(g.querySelector(".ci")),
                               box(g.querySelector(".mark"))];
    const apart = (a, b) => !a || !b || a.bottom <= b.top || b.bottom <= a.top ||
                            a.right <= b.left || b.right <= a.left;
    const fill = g.querySelector(".fill");
    return {name: g.querySelector(".name").textContent,
            status: g.querySelector(".pill").textContent,
            fill: getComputedStyle(fill).backgroundColor, label_clear_of_ci: apart(label, ci),
            label_clear_of_mark: apart(label, mark),
            label_inside_card: label.left >= box(g).left && label.right <= box(g).right};
  });
  const pre = "<pre id=geometry>" + JSON.stringify(out) + "</pre>";
  document.body.insertAdjacentHTML("beforeend", pre);
});
</script>"""


@needs_chromium
def test_gate_meters_in_chromium_amber_when_not_reached_and_no_label_overlap(
    tmp_path: Path,
) -> None:
    """Laid out by a real browser: the threshold label clears the CI box and the mark; the
    meter is green only for a passed gate, amber for one not reached, red for a closed one."""
    assert CHROMIUM is not None
    run = closed_run(tmp_path)
    # A close call: the threshold inside the CI, and a value that would pass; but the count
    # gate closed first, so the agreement gate was never reached.
    run.quality["agreement"] = 0.52
    run.quality["agreement_ci"] = [0.44, 0.61]
    run.min_agreement = 0.5
    _, html, _ = run.report()
    page = tmp_path / "geometry.html"
    # The report forbids scripts (CSP): the measuring copy drops the policy and adds one.
    page.write_text(
        re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html).replace(
            "</body>", GEOMETRY + "</body>"
        ),
        encoding="utf-8",
    )
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--window-size=1280,2400", "--virtual-time-budget=5000",
             "--dump-dom", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120, check=True,
            env={**os.environ, "HOME": profile},
        ).stdout  # fmt: skip
    match = re.search(r'<pre id="geometry">(.*?)</pre>', dom, re.S)
    assert match, dom[-2000:]
    cards = {c["name"]: c for c in json.loads(html_lib.unescape(match.group(1)))}
    count, agreement = cards["Enough labels"], cards["Annotators agree"]
    assert count["status"] == "closed"
    assert count["fill"] == "rgb(239, 68, 68)"  # red
    assert agreement["status"] == "not reached"
    assert agreement["fill"] == "rgb(245, 158, 11)"  # amber, not green
    for card in cards.values():
        assert card["label_clear_of_ci"], card
        assert card["label_clear_of_mark"], card
        assert card["label_inside_card"], card
