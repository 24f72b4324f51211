"""Everything the run report shows, gathered from the run's artifacts into one object.

The report reads artifacts written by other stages whose keys grow over time (see the shared
contracts). Every accessor here tolerates a missing key or a `null`: the page then says "n/a"
instead of failing, because a report that crashes explains nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from typing import Any

import numpy as np

from labelloop import storage
from labelloop.errors import BadRecord, InputError
from labelloop.gates import GateDecision
from labelloop.quality.result import QualityResult
from labelloop.schemas import Item

log = logging.getLogger(__name__)


def number(value: Any) -> float | None:
    """A finite float from a JSON value, or None (for null, NaN, strings, booleans)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def integer(value: Any) -> int | None:
    """An int from a JSON number (kfp hands ints back as floats), or None."""
    out = number(value)
    return None if out is None else round(out)


def matrix(value: Any) -> np.ndarray | None:
    """A 2-D float array from nested JSON lists (null cells become NaN), or None if ragged."""
    if not isinstance(value, list) or not value or not all(isinstance(r, list) for r in value):
        return None
    width = len(value[0])
    if width == 0 or any(len(r) != width for r in value):
        return None
    cells = [[number(c) for c in row] for row in value]
    return np.array([[np.nan if c is None else c for c in row] for row in cells], dtype=float)


def read_json_object(uri: str) -> dict[str, Any]:
    """A JSON object from `uri`; `{}` when the URI is empty or the file is missing.

    Raises:
        InputError: The file exists but is not a JSON object.
    """
    if not uri or not storage.exists(uri):
        return {}
    text = storage.read_text(uri)
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", source=uri, line=exc.lineno) from exc
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", source=uri)
    return data


def read_jsonl_objects(uri: str) -> tuple[list[dict[str, Any]], list[BadRecord]]:
    """JSON objects with an `item`, one per line; unreadable lines become bad records."""
    rows, bad = storage.read_jsonl_objects(uri)
    return [row for _, row in rows], bad


def per_class_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (rows = true class).

    Classes without predictions (or without support) get NaN for the undefined ratio.
    """
    cm = np.asarray(confusion, dtype=float)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), np.nan)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def row_normalize(confusion: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows without counts stay NaN)."""
    cm = np.asarray(confusion, dtype=float)
    sums = np.nansum(cm, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sums > 0, cm / sums, np.nan)


@dataclasses.dataclass(frozen=True)
class Gate:
    """One gate's decision as the report shows it."""

    name: str
    metric: str
    value: float | None
    threshold: float
    passed: bool
    evaluated: bool
    ci: tuple[float, float] | None = None
    rule: str = ""
    reason: str = ""

    @property
    def status(self) -> str:
        """`open`, `closed` or `not reached` (the agreement gate sits behind the count gate)."""
        if not self.evaluated:
            return "not reached"
        return "open" if self.passed else "closed"

    @property
    def ci_straddles(self) -> bool:
        """Whether the threshold lies inside the confidence interval (a close call)."""
        return self.ci is not None and self.ci[0] <= self.threshold <= self.ci[1]


@dataclasses.dataclass(frozen=True)
class ReportData:
    """The inputs of one report, read and lightly normalised.

    Attributes:
        run_id: The pipeline run id.
        quality: The quality gate's JSON (any subset of the contract keys).
        selection: The selection summary JSON.
        outcome: The training outcome JSON (trained, or the closed gate and why).
        review: Review rows (items a person should look at), as written by the quality gate.
        items: Dataset items by id (inline text lives only here).
        rounds: Round records oldest first, this round included.
        min_labeled_count: The count gate's threshold.
        min_agreement: The agreement gate's threshold.
        bad_records: Unreadable lines met while reading the inputs.
        job: The labeling job record (provider, key, progress, the provider's summary);
            `{}` when not given.
        state_uri: The loop's state ("" when the run keeps none).
        ledger: The ledger when the report was written: `items` (counts per state) and
            `open_jobs` (rows of `labelloop.ledger.open_job_rows`); `{}` when unknown.
    """

    run_id: str
    quality: dict[str, Any]
    selection: dict[str, Any]
    outcome: dict[str, Any]
    review: list[dict[str, Any]]
    items: dict[str, Item]
    rounds: list[dict[str, Any]]
    min_labeled_count: int
    min_agreement: float
    bad_records: list[BadRecord] = dataclasses.field(default_factory=list)
    job: dict[str, Any] = dataclasses.field(default_factory=dict)
    state_uri: str = ""
    ledger: dict[str, Any] = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def result(self) -> QualityResult:
        """The quality JSON, typed (read once; missing fields take their defaults)."""
        return QualityResult.from_json(self.quality)

    @property
    def label_count(self) -> int:
        return self.result.label_count

    @property
    def annotations(self) -> int | None:
        return integer(self.quality.get("annotations"))

    @property
    def annotator_count(self) -> int | None:
        if "annotators" not in self.quality and "annotator_table" not in self.quality:
            return None
        return self.result.annotators

    @property
    def labels(self) -> list[str]:
        """The label set, from the quality JSON, else the model outcome."""
        if self.result.labels:
            return self.result.labels
        observed = self.outcome.get("labels")
        return [str(v) for v in observed] if isinstance(observed, list) else []

    @property
    def agreement(self) -> float | None:
        return self.result.agreement

    @property
    def agreement_reason(self) -> str:
        """Why agreement was not measured ("" when it was)."""
        return self.result.agreement_reason

    @property
    def agreement_metric(self) -> str:
        return self.result.agreement_metric

    @property
    def agreement_ci(self) -> tuple[float, float] | None:
        lo, hi = self.result.agreement_ci
        return None if lo is None or hi is None else (lo, hi)

    @property
    def trained(self) -> bool:
        return bool(self.outcome.get("trained"))

    @property
    def reason(self) -> str:
        return str(self.outcome.get("reason", ""))

    @property
    def no_labels(self) -> bool:
        """Nothing was labeled this round (or the quality JSON is missing)."""
        return not (self.result.annotations or self.result.labeled_items)

    @property
    def single_annotator(self) -> bool:
        return self.annotator_count == 1

    @property
    def single_class(self) -> bool:
        """Only one class in the label set, or only one class ever given as an answer."""
        if len(self.labels) == 1:
            return True
        observed = self.outcome.get("labels")
        return len(self.result.per_class_agreement) == 1 or (
            isinstance(observed, list) and len(observed) == 1
        )

    @property
    def decision(self) -> GateDecision | None:
        """The gates' recorded decision (None in quality files written before it existed)."""
        return self.result.decision

    def gates(self) -> tuple[Gate, Gate]:
        """The count gate and the agreement gate, in pipeline order, as the quality step decided.

        The rule is not evaluated here: the recorded decision is read. Files written before the
        decision was recorded fall back to the round's outcome (which gate stayed closed).
        """
        decision = self.decision
        if decision is not None:
            count_passed = decision.count_passed
            agreement_passed = decision.agreement_passed
            reached = decision.agreement_evaluated
        else:
            gate_name = self.outcome.get("gate")
            count_passed = gate_name != "label_count"
            agreement_passed = self.trained
            reached = count_passed
        count = Gate(
            name="Enough labels",
            metric="label_count",
            value=float(self.label_count),
            threshold=float(self.min_labeled_count),
            passed=count_passed,
            evaluated=True,
        )
        agreement = Gate(
            name="Annotators agree",
            metric=self.agreement_metric,
            value=self.agreement,
            threshold=float(self.min_agreement),
            passed=agreement_passed,
            evaluated=reached,
            ci=self.agreement_ci,
            rule=decision.rule if decision else "",
            reason=decision.reason if decision else "",
        )
        return count, agreement


def load_items(uri: str) -> tuple[dict[str, Item], list[BadRecord]]:
    """Dataset items by id (an import JSONL); `{}` when no URI is given or the file is missing."""
    if not uri or not storage.exists(uri):
        return {}, []
    from labelloop.items import read_import_file

    items, bad = read_import_file(uri)
    return {item.id: item for item in items}, bad


def attach_annotations(
    review: list[dict[str, Any]], annotations: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Give review rows without an `annotations` list one built from the long-format annotations."""
    wanted = {str(r["item"]) for r in review if not isinstance(r.get("annotations"), list)}
    if not wanted:
        return review
    by_item: dict[str, list[dict[str, Any]]] = {}
    for row in annotations:
        item = str(row["item"])
        if item in wanted:
            answer = {k: v for k, v in row.items() if k != "item"}
            by_item.setdefault(item, []).append(answer)
    return [
        r
        if isinstance(r.get("annotations"), list)
        else {**r, "annotations": by_item.get(str(r["item"]), [])}
        for r in review
    ]
