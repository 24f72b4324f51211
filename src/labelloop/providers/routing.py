"""Gemini first, people for the rest: `gemini_then_human`.

Gemini labels every item. Its answers are accepted when their confidence reaches a threshold
calibrated on human-labeled items so that accepted answers reach `target_precision` (default
0.95, the target SageMaker Ground Truth's automated labeling uses); the other items go to the
human provider (Label Studio, the simulated workforce, ...), with Gemini's answer as a
pre-annotation where the provider takes predictions.

Calibration data, in order: a fixed `threshold` option; human labels in `calibration_uri`
(JSONL/CSV rows with `item` and `label`; long format with several annotators per item is
reduced by majority vote; text items need a `text` field, image items are their URI). Without
either, nothing is auto-accepted: every item goes to people and their labels become the next
round's calibration set.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from labelloop import storage
from labelloop.errors import InputError
from labelloop.providers.base import (
    CollectResult,
    Job,
    LabelingProvider,
    LabelingTask,
    Progress,
    job_key,
    resume,
)
from labelloop.providers.gemini import (
    GeminiOptions,
    GeminiProvider,
    Prediction,
    calibrate_threshold,
)
from labelloop.providers.label_studio import LabelStudioProvider
from labelloop.providers.registry import check_options, get_provider, register
from labelloop.schemas import Annotation, Item, text_item_id

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """How the threshold was chosen and what it does on the calibration sample."""

    threshold: float
    source: str
    sample: int
    accepted: int
    precision: float | None
    #: Counts of (human label, model answer) on the accepted calibration items, rows and
    #: columns in the task's label order: the model's known confusion, which consolidation
    #: uses to weigh an auto-accepted answer (empty without a calibration sample).
    confusion: tuple[tuple[int, ...], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": None if math.isinf(self.threshold) else self.threshold,
            "source": self.source,
            "sample": self.sample,
            "accepted": self.accepted,
            "precision": self.precision,
            "confusion": [list(row) for row in self.confusion],
        }


def read_human_labels(uri: str) -> tuple[dict[str, str], dict[str, Item]]:
    """Human labels by item (majority over annotators) and the items they can be rebuilt from."""
    rows: list[tuple[int, dict[str, Any]]] = []
    if uri.lower().endswith(".csv"):
        reader = csv.DictReader(storage.read_text(uri).splitlines())
        rows = [(reader.line_num, row) for row in reader]
    else:
        rows, bad = storage.read_jsonl_objects(uri, required=None)
        if bad:
            raise InputError(bad[0].reason, source=uri, line=bad[0].line, field=bad[0].field)
    votes: dict[str, Counter[str]] = {}
    items: dict[str, Item] = {}
    for number, row in rows:
        label = row.get("label")
        item = row.get("item")
        if not isinstance(label, str) or not item:
            raise InputError("needs 'item' and a single 'label'", source=uri, line=number)
        votes.setdefault(str(item), Counter())[label] += 1
        if row.get("text"):
            items[text_item_id(str(row["text"]))] = Item(
                text_item_id(str(row["text"])), text=str(row["text"])
            )
        elif not str(item).startswith("text:"):
            items[str(item)] = Item(str(item), uri=str(item))
    labels: dict[str, str] = {}
    for item, counter in votes.items():
        (top, n), *rest = [*counter.most_common(2), ("", 0)]
        if n > rest[0][1]:  # ties are not ground truth
            labels[item] = top
    return labels, items


@dataclasses.dataclass(frozen=True, kw_only=True)
class HumanOptions:
    """Who labels what Gemini is unsure of: a registered provider and its options."""

    provider: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self, field: str) -> None:
        if self.provider == NAME:
            raise InputError(
                "name a human provider, e.g. 'label_studio'", field=f"{field}.provider"
            )
        check_options(self.provider, self.options, field=f"{field}.options", job_options=False)

    def typed(self) -> Any:
        """The human provider's options, checked against its schema."""
        return check_options(self.provider, self.options, job_options=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RoutingOptions:
    """`provider_options` of `gemini_then_human`.

    Args:
        gemini: Gemini's options (`GeminiOptions`).
        human: `{"provider": ..., "options": {...}}` for the items below the threshold.
        target_precision: Precision wanted among auto-accepted answers.
        threshold: A fixed threshold (skips calibration).
        calibration_uri: Human labels to calibrate on.
        min_accepted: Fewest calibration items a threshold must accept.
    """

    human: HumanOptions
    gemini: GeminiOptions = dataclasses.field(default_factory=GeminiOptions)
    target_precision: float = 0.95
    threshold: float | None = None
    calibration_uri: str | None = None
    min_accepted: int = 10

    def validate(self, field: str) -> None:
        if not 0.0 < self.target_precision <= 1.0:
            raise InputError("must lie in (0, 1]", field=f"{field}.target_precision")


NAME = "gemini_then_human"


@register(NAME, options=RoutingOptions)
class RoutingProvider:
    """Gemini with calibrated auto-accept; the rest to a human provider.

    Args:
        gemini: The Gemini provider.
        human: Any provider for the items below the threshold.
        target_precision: Precision wanted among auto-accepted answers.
        threshold: A fixed threshold (skips calibration).
        calibration_uri: Human labels to calibrate on.
        min_accepted: Fewest calibration items a threshold must accept.
    """

    name = NAME

    def __init__(
        self,
        gemini: GeminiProvider,
        human: LabelingProvider,
        *,
        target_precision: float = 0.95,
        threshold: float | None = None,
        calibration_uri: str | None = None,
        min_accepted: int = 10,
    ) -> None:
        if not 0.0 < target_precision <= 1.0:
            raise InputError("must lie in (0, 1]", field="provider_options.target_precision")
        self.gemini = gemini
        self.human = human
        self.target_precision = target_precision
        self.threshold = threshold
        self.calibration_uri = calibration_uri
        self.min_accepted = min_accepted
        self.calibration: Calibration | None = None
        self._routed: dict[str, Any] = {}
        self._jobs: dict[str, tuple[list[Prediction], Job, float]] = {}
        self._auto: dict[str, int] = {}

    @classmethod
    def from_options(cls, options: RoutingOptions) -> RoutingProvider:
        """Build from checked options (see `RoutingOptions`)."""
        return cls(
            GeminiProvider.from_options(options.gemini),
            get_provider(options.human.provider, options.human.options),
            target_precision=options.target_precision,
            threshold=options.threshold,
            calibration_uri=options.calibration_uri,
            min_accepted=options.min_accepted,
        )

    def calibrate(self, task: LabelingTask, instructions: str = "") -> Calibration:
        """Choose the auto-accept threshold (see the module docstring for the sources)."""
        if self.threshold is not None:
            return Calibration(self.threshold, "option", 0, 0, None)
        if not self.calibration_uri or not storage.exists(self.calibration_uri):
            log.warning("no calibration labels: every item goes to people this round")
            return Calibration(math.inf, "none", 0, 0, None)
        truth, items = read_human_labels(self.calibration_uri)
        sample = [items[i] for i in truth if i in items]
        preds = self.gemini.predict(sample, task, instructions)
        valid = [p for p in preds if p.label is not None]
        conf = np.array([p.confidence for p in valid])
        correct = np.array([p.label == truth[p.item] for p in valid], dtype=bool)
        threshold = calibrate_threshold(
            conf, correct, target_precision=self.target_precision, min_accepted=self.min_accepted
        )
        accepted = conf >= threshold
        precision = float(correct[accepted].mean()) if accepted.any() else None
        index = {label: j for j, label in enumerate(task.labels)}
        counts = np.zeros((len(index), len(index)), dtype=np.int64)
        for p, keep in zip(valid, accepted, strict=True):
            if keep and truth[p.item] in index and p.label in index:
                counts[index[truth[p.item]], index[str(p.label)]] += 1
        return Calibration(
            threshold,
            self.calibration_uri,
            len(valid),
            int(accepted.sum()),
            precision,
            tuple(tuple(int(v) for v in row) for row in counts),
        )

    def submit(
        self,
        items: Sequence[Item],
        task: LabelingTask,
        *,
        labelers_per_item: int,
        instructions: str = "",
    ) -> Job:
        key = job_key(self.name, items, task, labelers_per_item)
        text = instructions or task.instructions
        self.calibration = self.calibrate(task, text)
        threshold = self.calibration.threshold
        preds = self.gemini.predict(items, task, text)
        routed = [
            item
            for item, p in zip(items, preds, strict=True)
            if p.label is None or p.confidence < threshold
        ]
        pre = {p.item: (p.label, p.confidence) for p in preds if p.label is not None}
        if isinstance(self.human, LabelStudioProvider):
            # Label Studio takes Gemini's answers as pre-annotations with their scores.
            human_job = self.human.submit(
                routed,
                task,
                labelers_per_item=labelers_per_item,
                instructions=text,
                predictions=pre,
                key=key,
            )
        else:
            human_job = self.human.submit(
                routed, task, labelers_per_item=labelers_per_item, instructions=text
            )
        self._jobs[key] = (preds, human_job, threshold)
        self._routed = {
            "target_precision": self.target_precision,
            "auto_accepted": len(items) - len(routed),
            "to_people": len(routed),
        }
        log.info(
            "routing: %d item(s) auto-accepted, %d to %s (%s)",
            len(items) - len(routed),
            len(routed),
            self.human.name,
            self.calibration.to_json(),
        )
        external = json.dumps(
            {
                "human": human_job.to_json(),
                "routed": [i.id for i in routed],
                "auto": len(items) - len(routed),
            },
            sort_keys=True,
        )
        return Job(self.name, key, external, len(items), labelers_per_item)

    def resume(self, job: Job, items: Sequence[Item], task: LabelingTask) -> Job:
        """Reattach the human part of an earlier run's job (Gemini's accepted answers were
        collected then and are kept in the ledger; nothing is asked of Gemini again)."""
        if not job.external_id:
            return dataclasses.replace(
                self.submit(items, task, labelers_per_item=job.labelers_per_item),
                collections=job.collections,
            )
        external = json.loads(job.external_id)
        routed_ids = set(external.get("routed", []))
        human = Job(**{**external["human"], "collections": job.collections})
        human = resume(self.human, human, [i for i in items if i.id in routed_ids], task)
        self._jobs[job.key] = ([], human, math.inf)
        self._auto[job.key] = int(external.get("auto", 0))
        return dataclasses.replace(job, items=len(items))

    def _state(self, job: Job) -> tuple[list[Prediction], Job, float]:
        if job.key not in self._jobs:
            raise InputError(f"unknown job {job.key}; submit it first")
        return self._jobs[job.key]

    def _accepted(self, job: Job) -> list[Prediction]:
        preds, _, threshold = self._state(job)
        return [p for p in preds if p.label is not None and p.confidence >= threshold]

    def progress(self, job: Job) -> Progress:
        _, human_job, _ = self._state(job)
        human = self.human.progress(dataclasses.replace(human_job, collections=job.collections))
        auto = self._auto.get(job.key, len(self._accepted(job)))
        return Progress(auto + human.labeled, job.items)

    def collect(self, job: Job) -> CollectResult:
        _, human_job, _ = self._state(job)
        got = self.human.collect(dataclasses.replace(human_job, collections=job.collections))
        auto = [
            Annotation(p.item, self.gemini.annotator, str(p.label)) for p in self._accepted(job)
        ]
        return CollectResult(auto + got.annotations, got.bad, skipped=got.skipped)

    def cancel(self, job: Job) -> None:
        _, human_job, _ = self._state(job)
        self.human.cancel(human_job)

    def summary(self) -> dict[str, Any]:
        """Calibration, how many items each side got, Gemini usage and cost, and the human
        provider's own summary (a Label Studio project's title and URL)."""
        human = getattr(self.human, "summary", None)
        return {
            "calibration": self.calibration.to_json() if self.calibration else None,
            "model_annotator": self.gemini.annotator,
            **self._routed,
            "gemini": self.gemini.summary(),
            "human": human() if callable(human) else {},
        }
