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

from labelloop import guarantee, storage
from labelloop.errors import InputError
from labelloop.guarantee import Policy as GuaranteePolicy
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
from labelloop.schemas import Annotation, AnnotatorKind, Item, text_item_id

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
        guarantee: Auto-accept under an error guarantee (`labelloop.guarantee.Policy`):
            a certified threshold, audits by people every round, a pause on drift.
    """

    human: HumanOptions
    gemini: GeminiOptions = dataclasses.field(default_factory=GeminiOptions)
    target_precision: float = 0.95
    threshold: float | None = None
    calibration_uri: str | None = None
    min_accepted: int = 10
    # Named apart from the module: typing resolves annotations in the class namespace too.
    guarantee: GuaranteePolicy | None = None

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
        policy: Auto-accept under a guarantee (`labelloop.guarantee`): the threshold is
            certified by an upper confidence bound instead of `target_precision`, a share of
            accepted items is audited by people every round, and auto-accept pauses on drift.
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
        policy: guarantee.Policy | None = None,
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
        self.policy = policy
        self.decision: guarantee.Decision | None = None
        self.audit: guarantee.AuditRound | None = None
        self._audited: dict[str, set[str]] = {}
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
            policy=options.guarantee,
        )

    def calibrate(self, task: LabelingTask, instructions: str = "") -> Calibration:
        """Choose the auto-accept threshold (see the module docstring for the sources)."""
        if self.threshold is not None:
            return Calibration(self.threshold, "option", 0, 0, None)
        if self.policy is not None:
            return self._certified(task, instructions)
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

    def _certified(self, task: LabelingTask, instructions: str) -> Calibration:
        """The threshold under the guarantee: the newest certificate, unless audits show drift."""
        policy = self.policy or guarantee.Policy()
        audits, renewed = guarantee.read_history(policy.audits_uri)
        if renewed is not None:
            cert, source = renewed, policy.audits_uri
        else:
            conf: np.ndarray = np.zeros(0)
            correct: np.ndarray = np.zeros(0, dtype=bool)
            source = "none"
            if self.calibration_uri and storage.exists(self.calibration_uri):
                truth, items = read_human_labels(self.calibration_uri)
                sample = [items[i] for i in truth if i in items]
                valid = [p for p in self.gemini.predict(sample, task, instructions) if p.label]
                conf = np.array([p.confidence for p in valid])
                correct = np.array([p.label == truth[p.item] for p in valid], dtype=bool)
                source = self.calibration_uri
            cert = guarantee.certify(
                conf, correct, target_error=policy.target_error, confidence=policy.confidence
            )
        self.decision = guarantee.decide(cert, audits)
        log.info("routing: %s", self.decision.reason)
        precision = 1.0 - cert.errors / cert.accepted if cert.accepted else None
        return Calibration(self.decision.threshold, source, cert.sample, cert.accepted, precision)

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
        accepted = [p.item for p in preds if p.label is not None and p.confidence >= threshold]
        audited: set[str] = set()
        if self.policy is not None:
            # A random share of the accepted answers goes to people too: the audit.
            audited = guarantee.audit_ids(
                accepted,
                share=self.policy.audit_share,
                minimum=self.policy.audit_minimum,
                seed=int(key[:8], 16),
            )
        self._audited[key] = audited
        routed = [
            item
            for item, p in zip(items, preds, strict=True)
            if p.label is None or p.confidence < threshold or item.id in audited
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
        audited = self._audited.get(job.key, set())
        return [
            p
            for p in preds
            if p.label is not None and p.confidence >= threshold and p.item not in audited
        ]

    def progress(self, job: Job) -> Progress:
        _, human_job, _ = self._state(job)
        human = self.human.progress(dataclasses.replace(human_job, collections=job.collections))
        auto = self._auto.get(job.key, len(self._accepted(job)))
        return Progress(auto + human.labeled, job.items)

    def collect(self, job: Job) -> CollectResult:
        _, human_job, _ = self._state(job)
        got = self.human.collect(dataclasses.replace(human_job, collections=job.collections))
        auto = [
            Annotation(p.item, self.gemini.annotator, str(p.label), AnnotatorKind.MODEL)
            for p in self._accepted(job)
        ]
        if self.policy is not None:
            self._score_audit(job, got.annotations)
        return CollectResult(auto + got.annotations, got.bad, skipped=got.skipped)

    def _score_audit(self, job: Job, human: Sequence[Annotation]) -> None:
        """Score this job's audit against people's labels and keep it for the next rounds.

        When auto-accept was off (paused or uncertified), every item went to people: their
        labels are a fresh calibration sample and may certify a threshold again.
        """
        policy = self.policy or guarantee.Policy()
        preds, _, threshold = self._state(job)
        conf = {p.item: p.confidence for p in preds}
        votes: dict[str, Counter[str]] = {}
        for a in human:
            if isinstance(a.value, str):
                votes.setdefault(a.item, Counter())[a.value] += 1
        majority = {i: c.most_common(1)[0][0] for i, c in votes.items()}
        answers = {p.item: str(p.label) for p in preds if p.label is not None}
        audits, _ = guarantee.read_history(policy.audits_uri)
        round_no = max([a.round for a in audits] + [0]) + 1
        renewed: guarantee.Certificate | None = None
        audit: guarantee.AuditRound | None = None
        if math.isinf(threshold):
            both = [i for i in answers if i in majority]
            renewed = guarantee.certify(
                np.array([conf[i] for i in both]),
                np.array([answers[i] == majority[i] for i in both], dtype=bool),
                target_error=policy.target_error,
                confidence=policy.confidence,
                round=round_no,
            )
        else:
            accepted = {i: a for i, a in answers.items() if conf[i] >= threshold}
            audit = guarantee.audit_round(
                round_no,
                threshold=threshold,
                model_labels=accepted,
                human_labels=majority,
                audited=self._audited.get(job.key, set()),
            )
        self.audit = audit
        if policy.audits_uri:
            guarantee.write_history(
                policy.audits_uri,
                job=job.key,
                audit=audit,
                certificate=renewed if renewed is not None and renewed.certified else None,
            )

    def cancel(self, job: Job) -> None:
        _, human_job, _ = self._state(job)
        self.human.cancel(human_job)

    def work_seconds(self, job: Job) -> dict[tuple[str, str], float]:
        """The human provider's reported time per (item, annotator), when it reports any."""
        _, human_job, _ = self._state(job)
        work = getattr(self.human, "work_seconds", None)
        return work(human_job) if callable(work) else {}

    def summary(self) -> dict[str, Any]:
        """Calibration, how many items each side got, Gemini usage and cost, the human
        provider's own summary (a Label Studio project's title and URL); under a guarantee,
        the decision and the audit."""
        human = getattr(self.human, "summary", None)
        out: dict[str, Any] = {
            "calibration": self.calibration.to_json() if self.calibration else None,
            "model_annotator": self.gemini.annotator,
            **self._routed,
            "gemini": self.gemini.summary(),
            "human": human() if callable(human) else {},
        }
        if self.policy is not None:
            out["guarantee"] = self.decision.to_json() if self.decision else None
            out["audit"] = self.audit.to_json() if self.audit else None
        return out
