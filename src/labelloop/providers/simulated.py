"""A simulated workforce: seeded annotators with per-class confusion matrices.

It reads a hidden ground truth and answers the way a crowd would: some careful annotators,
some sloppy ones, a near-random one, and optionally spammers (always the same label) and
adversarial annotators (never the true label). Everything is a function of the seed and the
item id (a counter-based hash, vectorised over items), so a retried step collects exactly the
same annotations and an item gets the same answers in every job it is part of.

Task types:

* single-label classification: each annotator draws from its confusion-matrix row;
* multi-label: each label is reported with the annotator's accuracy when present and with a
  small false-positive rate when absent (spammers report their favourite label only,
  adversarial annotators report exactly the absent labels);
* object detection / entity extraction (truth from a JSONL file with `boxes` / `spans`): each
  true region is missed with probability `(1 - accuracy) / 2`, its label drawn from the
  confusion row, and its coordinates jittered in proportion to the annotator's error.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from labelloop import storage
from labelloop.errors import BadRecord, InputError, ProviderError
from labelloop.options import INPUT_FILE
from labelloop.providers.base import CollectResult, Job, LabelingTask, Progress, job_key
from labelloop.providers.registry import register
from labelloop.schemas import Annotation, AnnotationValue, AnnotatorKind, Box, Item, Shape, Span

# Accuracy of each annotator in a workforce profile; "random" entries are chance level.
PROFILES: dict[str, tuple[float | str, ...]] = {
    "mixed": (0.95, 0.92, 0.88, 0.85, 0.8, 0.75, "random"),
    "expert": (0.99, 0.98, 0.97, 0.96, 0.95),
    "random": ("random",) * 6,
    "noisy": (0.9, 0.7, 0.6, "random", "spammer", "adversarial"),
}

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
#: The simulated reviewer of review projects (answers with the truth).
REVIEWER = "sim-reviewer"


@dataclasses.dataclass(frozen=True)
class Annotator:
    """One simulated annotator: an id and a confusion matrix (rows: true class)."""

    id: str
    kind: str
    confusion: np.ndarray

    @property
    def accuracy(self) -> float:
        return float(np.mean(np.diag(self.confusion)))


def make_annotator(index: int, spec: float | str, n_labels: int, *, seed: int) -> Annotator:
    """Build annotator `index` of a profile; `spec` is an accuracy or a kind."""
    rng = np.random.default_rng([seed, index, 7])
    name = f"sim-{index:02d}"
    if spec == "random":
        return Annotator(name, "random", np.full((n_labels, n_labels), 1.0 / n_labels))
    if spec == "spammer":
        favourite = int(rng.integers(n_labels))
        spam = np.zeros((n_labels, n_labels))
        spam[:, favourite] = 1.0
        return Annotator(name, "spammer", spam)
    if spec == "adversarial":
        adv = np.asarray(rng.dirichlet(np.ones(n_labels), size=n_labels), dtype=float)
        np.fill_diagonal(adv, 0.0)
        adv /= adv.sum(axis=1, keepdims=True)
        return Annotator(name, "adversarial", adv)
    if isinstance(spec, str):
        raise InputError(f"unknown annotator kind {spec!r}", field="provider_options.workforce")
    accuracy = float(spec)
    errors = np.asarray(rng.dirichlet(np.ones(n_labels), size=n_labels), dtype=float)
    np.fill_diagonal(errors, 0.0)
    # Spread the error mass over the other classes, then put the accuracy on the diagonal.
    row_sums = errors.sum(axis=1, keepdims=True)
    errors = np.where(row_sums > 0, errors / np.where(row_sums > 0, row_sums, 1.0), 0.0)
    errors *= 1.0 - accuracy
    np.fill_diagonal(errors, accuracy)
    return Annotator(name, "accurate", errors)


def _item_seed(seed: int, item_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{item_id}".encode()).digest()[:8], "little")


def _item_seeds(seed: int, item_ids: Sequence[str]) -> np.ndarray:
    return np.fromiter(
        (_item_seed(seed, i) for i in item_ids), dtype=np.uint64, count=len(item_ids)
    )


def uniforms(seeds: np.ndarray, streams: int) -> np.ndarray:
    """Counter-based uniforms in [0, 1): shape (len(seeds), streams), splitmix64 per cell."""
    with np.errstate(over="ignore"):
        z = seeds[:, None] + _GOLDEN * np.arange(1, streams + 1, dtype=np.uint64)[None, :]
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def read_structured_truth(uri: str) -> dict[str, AnnotationValue]:
    """Truth from JSONL rows `{"item", "label"|"labels"|"boxes"|"spans"}`."""
    truth: dict[str, AnnotationValue] = {}
    rows, bad = storage.read_jsonl_objects(uri)
    if bad:
        raise InputError(
            f"bad truth row ({bad[0].field}: {bad[0].reason})", source=uri, line=bad[0].line
        )
    for number, row in rows:
        try:
            item = str(row["item"])
            if "boxes" in row:
                truth[item] = tuple(Box(**b) for b in row["boxes"])
            elif "spans" in row:
                truth[item] = tuple(Span(**s) for s in row["spans"])
            elif "labels" in row:
                truth[item] = frozenset(str(v) for v in row["labels"])
            else:
                truth[item] = str(row["label"])
        except (KeyError, TypeError) as exc:
            raise InputError(f"bad truth row ({exc})", source=uri, line=number) from None
    return truth


def _check_workforce(workforce: str, *, field: str) -> None:
    if workforce not in PROFILES:
        raise InputError(
            f"unknown workforce {workforce!r}; expected one of {', '.join(PROFILES)}",
            field=f"{field}.workforce",
        )


def _check_paces(pace: float, annotator_pace: Mapping[str, float], *, field: str) -> None:
    paces = {"pace": pace, **{f"annotator_pace.{k}": v for k, v in annotator_pace.items()}}
    for name, value in paces.items():
        if not 0.0 < float(value) <= 1.0:
            raise InputError("must lie in (0, 1]", field=f"{field}.{name}")


def _check_completion(completion: float, *, field: str) -> None:
    if not 0.0 <= completion <= 1.0:
        raise InputError("must lie in [0, 1]", field=f"{field}.completion")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimulatedOptions:
    """`provider_options` of the simulated workforce.

    Args:
        truth_uri: The hidden ground truth file. CSV `item,label` or JSONL with `label`,
            `labels`, `boxes` or `spans` (the bundled samples supply theirs).
        workforce: A profile name from `PROFILES`.
        completion: Fraction of items that ever get labels.
        pace: Share of a job's outstanding tasks people finish between two collections.
        annotator_pace: A different pace for some annotators, by annotator id.
        unreachable: Simulate an outage (every call fails like an unreachable server).
        seed: Decides the annotators and every answer.
    """

    truth_uri: str = dataclasses.field(metadata=INPUT_FILE)
    workforce: str = "mixed"
    completion: float = 1.0
    pace: float = 1.0
    annotator_pace: dict[str, float] = dataclasses.field(default_factory=dict)
    unreachable: bool = False
    seed: int = 0

    def validate(self, field: str) -> None:
        _check_workforce(self.workforce, field=field)
        _check_completion(self.completion, field=field)
        _check_paces(self.pace, self.annotator_pace, field=field)


@register("simulated", options=SimulatedOptions)
class SimulatedWorkforce:
    """A provider whose annotators are simulated from a hidden ground truth.

    Args:
        truth: Item id -> true value: a label (`a|b` for multi-label), a frozenset of labels,
            or a tuple of boxes or spans.
        workforce: A profile name from `PROFILES`.
        completion: Fraction of items that ever get labels (the rest are never answered).
        pace: Share of a job's outstanding tasks (item, annotator) people finish between two
            collections: after `n` collections a task is done with probability
            `1 - (1 - pace) ** n` (1.0: everything at the first collection).
        annotator_pace: A slower (or faster) pace for some annotators, by annotator id.
        unreachable: Simulate an outage: every call fails as an unreachable server would.
        seed: Decides the annotators' confusion matrices and every answer.
    """

    name = "simulated"

    def __init__(
        self,
        truth: Mapping[str, Any],
        *,
        workforce: str = "mixed",
        completion: float = 1.0,
        pace: float = 1.0,
        annotator_pace: Mapping[str, float] | None = None,
        unreachable: bool = False,
        seed: int = 0,
    ) -> None:
        _check_workforce(workforce, field="provider_options")
        _check_completion(completion, field="provider_options")
        _check_paces(pace, annotator_pace or {}, field="provider_options")
        self.pace = float(pace)
        self.annotator_pace = {str(k): float(v) for k, v in (annotator_pace or {}).items()}
        self.unreachable = unreachable
        self.truth = dict(truth)
        self.workforce = workforce
        self.completion = completion
        self.seed = seed
        self._jobs: dict[str, tuple[list[Item], LabelingTask, int]] = {}

    @classmethod
    def from_options(cls, options: SimulatedOptions) -> SimulatedWorkforce:
        """Build from checked options (see `SimulatedOptions`)."""
        from labelloop.sample_data import read_truth

        if not options.truth_uri:
            raise InputError(
                "the simulated workforce needs a ground truth file",
                field="provider_options.truth_uri",
            )
        uri = options.truth_uri
        truth: Mapping[str, Any] = (
            read_structured_truth(uri) if uri.lower().endswith(".jsonl") else read_truth(uri)
        )
        return cls(
            truth,
            workforce=options.workforce,
            completion=options.completion,
            pace=options.pace,
            annotator_pace=options.annotator_pace,
            unreachable=options.unreachable,
            seed=options.seed,
        )

    def annotators(self, n_labels: int, minimum: int) -> list[Annotator]:
        """The profile's annotators, repeated with fresh seeds until there are `minimum`."""
        specs = PROFILES[self.workforce]
        count = max(len(specs), minimum)
        return [
            make_annotator(i, specs[i % len(specs)], n_labels, seed=self.seed) for i in range(count)
        ]

    def submit(
        self,
        items: Sequence[Item],
        task: LabelingTask,
        *,
        labelers_per_item: int,
        instructions: str = "",
    ) -> Job:
        if labelers_per_item < 1:
            raise InputError("must be at least 1", field="labelers_per_item")
        self._reach()
        key = job_key(self.name, items, task, labelers_per_item)
        self._jobs[key] = (list(items), task, labelers_per_item)
        return Job(self.name, key, f"sim-{key}", len(items), labelers_per_item)

    def resume(self, job: Job, items: Sequence[Item], task: LabelingTask) -> Job:
        """Reattach a job from its ledger record (the simulation keeps nothing between runs)."""
        self._reach()
        self._jobs[job.key] = (list(items), task, job.labelers_per_item)
        return dataclasses.replace(
            job, items=len(items), external_id=job.external_id or f"sim-{job.key}"
        )

    def _reach(self) -> None:
        if self.unreachable:
            raise ProviderError("simulated workforce unreachable (simulated outage)")

    def _answered(self, job: Job, annotations: list[Annotation]) -> list[Annotation]:
        """The answers people have given by this collection (see `pace`)."""
        if self.pace >= 1.0 and not self.annotator_pace:
            return annotations
        n = job.collections + 1
        kept = []
        for a in annotations:
            pace = self.annotator_pace.get(a.annotator, self.pace)
            u = _item_seed(self.seed + 2, f"{job.key}\0{a.item}\0{a.annotator}") / 2.0**64
            if u < 1.0 - (1.0 - pace) ** n:
                kept.append(a)
        return kept

    def _labeled_items(self, job: Job) -> list[Item]:
        items, _, _ = self._jobs[job.key]
        if self.completion >= 1.0:
            return list(items)
        seeds = _item_seeds(self.seed + 1, [i.id for i in items])
        keep = (seeds % np.uint64(10_000)) < self.completion * 10_000
        return [i for i, k in zip(items, keep, strict=True) if k]

    def progress(self, job: Job) -> Progress:
        if job.key not in self._jobs:
            raise InputError(f"unknown job {job.key}; submit it first")
        self._reach()
        _, _, per_item = self._jobs[job.key]
        counts: dict[str, int] = {}
        for a in self.collect(job).annotations:
            counts[a.item] = counts.get(a.item, 0) + 1
        return Progress(sum(1 for n in counts.values() if n >= per_item), job.items)

    def _truth_of(self, item: str, task: LabelingTask) -> AnnotationValue | None:
        value = self.truth.get(item)
        if task.task_type.multi_label and isinstance(value, str):
            return frozenset(v for v in value.split("|") if v)
        return value

    def collect(self, job: Job) -> CollectResult:
        if job.key not in self._jobs:
            raise InputError(f"unknown job {job.key}; submit it first")
        self._reach()
        _, task, per_item = self._jobs[job.key]
        labels = list(task.labels)
        index = {label: i for i, label in enumerate(labels)}
        pool = self.annotators(len(labels), per_item)
        bad: list[BadRecord] = []
        ok_items: list[str] = []
        truths: list[AnnotationValue] = []
        for item in self._labeled_items(job):
            true = self._truth_of(item.id, task)
            reason = self._truth_problem(true, task, index)
            if reason:
                bad.append(BadRecord("simulated-truth", 0, "item", f"{item.id}: {reason}"))
                continue
            ok_items.append(item.id)
            truths.append(true)  # type: ignore[arg-type]
        if not ok_items:
            return CollectResult([], bad)
        # An item sent back for more answers (attempt n) draws its annotators afresh.
        attempts = {i.id: i.attempt for i in self._labeled_items(job) if i.attempt}
        seeds = _item_seeds(
            self.seed, [f"{i}#{attempts[i]}" if i in attempts else i for i in ok_items]
        )
        # Which annotators label each item: the `per_item` smallest of one uniform per annotator.
        draw = uniforms(seeds, len(pool) + 1)
        chosen = np.sort(
            np.argsort(draw[:, : len(pool)], axis=1, kind="stable")[:, :per_item], axis=1
        )
        answer_u = draw[:, len(pool)]
        if task.task_type.shape is Shape.SINGLE:
            annotations = self._single_label(
                ok_items,
                truths=truths,
                chosen=chosen,
                seeds=seeds,
                pool=pool,
                labels=labels,
                index=index,
            )
        else:
            annotations = []
            for row, (item_id, true) in enumerate(zip(ok_items, truths, strict=True)):
                rng = np.random.default_rng([int(seeds[row]), int(answer_u[row] * 1e9)])
                for a in chosen[row]:
                    value = self._structured(true, pool[int(a)], labels, index, rng)
                    annotations.append(Annotation(item_id, pool[int(a)].id, value))
        return CollectResult(self._answered(job, annotations), bad)

    @staticmethod
    def _truth_problem(true: Any, task: LabelingTask, index: Mapping[str, int]) -> str:
        if true is None:
            return "no ground truth"
        if isinstance(true, str) and not task.task_type.multi_label:
            # The common case, checked without building anything.
            ok = true in index and task.task_type.is_classification
            return "" if ok else f"truth {true!r} not in label set or not a single label"
        if isinstance(true, str):
            parts = [true]
        elif isinstance(true, frozenset):
            parts = sorted(true)
        else:
            parts = [p.label for p in true]
        unknown = [p for p in parts if p not in index]
        if unknown:
            return f"truth {unknown[0]!r} not in label set"
        kind_ok = {
            "single": isinstance(true, str),
            "multi": isinstance(true, frozenset),
            "boxes": isinstance(true, tuple) and all(isinstance(p, Box) for p in true),
            "spans": isinstance(true, tuple) and all(isinstance(p, Span) for p in true),
        }
        want = task.task_type.shape
        return "" if kind_ok[want] else f"truth is not a {want} answer"

    @staticmethod
    def _single_label(
        items: list[str],
        *,
        truths: list[Any],
        chosen: np.ndarray,
        seeds: np.ndarray,
        pool: list[Annotator],
        labels: list[str],
        index: Mapping[str, int],
    ) -> list[Annotation]:
        """Vectorised: one cumulative-confusion lookup per (item, chosen annotator)."""
        per_item = chosen.shape[1]
        true_idx = np.array([index[t] for t in truths], dtype=np.int64)
        cumulative = np.cumsum(np.stack([a.confusion for a in pool]), axis=2)
        u = uniforms(seeds ^ np.uint64(0x5DEECE66D), per_item)
        rows = cumulative[chosen, true_idx[:, None]]  # (items, per_item, labels)
        answers = np.minimum((u[..., None] >= rows).sum(axis=2), len(labels) - 1)
        ids = [a.id for a in pool]
        # Plain lists: indexing numpy arrays element by element is slow.
        return [
            Annotation(item, ids[c], labels[a])
            for item, c_row, a_row in zip(items, chosen.tolist(), answers.tolist(), strict=True)
            for c, a in zip(c_row, a_row, strict=True)
        ]

    @staticmethod
    def _structured(
        true: AnnotationValue,
        annotator: Annotator,
        labels: list[str],
        index: Mapping[str, int],
        rng: np.random.Generator,
    ) -> AnnotationValue:
        acc = annotator.accuracy
        conf = annotator.confusion
        if isinstance(true, frozenset):
            present = np.array([label in true for label in labels])
            if annotator.kind == "spammer":
                fav = int(np.argmax(conf[0]))
                return frozenset({labels[fav]})
            if annotator.kind == "adversarial":
                chosen = ~present
            else:
                p = np.where(present, acc, (1.0 - acc) / max(len(labels), 1))
                chosen = rng.random(len(labels)) < p
            return frozenset(label for label, c in zip(labels, chosen, strict=True) if c)
        if isinstance(true, str):
            raise InputError("single labels are answered in bulk")
        out_boxes: list[Box] = []
        out_spans: list[Span] = []
        err = 1.0 - acc
        for part in true:
            if rng.random() < err / 2:
                continue  # missed region
            label = labels[int(rng.choice(len(labels), p=conf[index[part.label]]))]
            if isinstance(part, Box):
                w, h = part.x_max - part.x_min, part.y_max - part.y_min
                jitter = rng.normal(0.0, 0.25 * err, size=4) * np.array([w, h, w, h])
                x0, y0, x1, y1 = np.clip(
                    np.array([part.x_min, part.y_min, part.x_max, part.y_max]) + jitter, 0.0, 1.0
                )
                if x1 > x0 and y1 > y0:
                    out_boxes.append(Box(float(x0), float(y0), float(x1), float(y1), label))
            else:
                shift = rng.integers(-2, 3, size=2) if rng.random() < err else np.zeros(2, int)
                start = max(0, part.start + int(shift[0]))
                end = max(start + 1, part.end + int(shift[1]))
                out_spans.append(Span(start, end, label))
        return (
            tuple(out_boxes)
            if out_boxes or isinstance(next(iter(true), None), Box)
            else tuple(out_spans)
        )

    def submit_review(
        self, rows: Sequence[Any], items: Sequence[Item], task: LabelingTask, *, key: str
    ) -> Job:
        """A simulated review: one expert who answers with the truth (for tests and demos)."""
        self._reach()
        return Job(self.name, key, f"sim-review-{key}", len(rows), 1)

    def collect_review(self, job: Job, items: Sequence[str]) -> CollectResult:
        """The simulated expert's answers (`REVIEWER`): the truth of every pushed item."""
        self._reach()
        answers = [
            Annotation(i, REVIEWER, self.truth[i], AnnotatorKind.EXPERT)
            for i in items
            if isinstance(self.truth.get(i), str)
        ]
        return CollectResult(answers, [])

    def cancel(self, job: Job) -> None:
        self._jobs.pop(job.key, None)
