"""A simulated workforce: seeded annotators with per-class confusion matrices.

It reads a hidden ground truth and answers the way a crowd would: some careful annotators,
some sloppy ones, a near-random one, and optionally spammers (always the same label) and
adversarial annotators (never the true label). Everything is a function of the seed and the
item id, so a retried step collects exactly the same annotations.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from labelloop.errors import BadRecord, InputError
from labelloop.providers.base import CollectResult, Job, LabelingTask, Progress, job_key
from labelloop.schemas import Annotation, Item

# Accuracy of each annotator in a workforce profile; "random" entries are chance level.
PROFILES: dict[str, tuple[float | str, ...]] = {
    "mixed": (0.95, 0.92, 0.88, 0.85, 0.8, 0.75, "random"),
    "expert": (0.99, 0.98, 0.97, 0.96, 0.95),
    "random": ("random",) * 6,
    "noisy": (0.9, 0.7, 0.6, "random", "spammer", "adversarial"),
}


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
    if spec == "random":
        return Annotator(f"sim-{index:02d}", "random", np.full((n_labels, n_labels), 1.0 / n_labels))
    if spec == "spammer":
        favourite = int(rng.integers(n_labels))
        confusion = np.zeros((n_labels, n_labels))
        confusion[:, favourite] = 1.0
        return Annotator(f"sim-{index:02d}", "spammer", confusion)
    if spec == "adversarial":
        confusion = rng.dirichlet(np.ones(n_labels), size=n_labels)
        np.fill_diagonal(confusion, 0.0)
        confusion /= confusion.sum(axis=1, keepdims=True)
        return Annotator(f"sim-{index:02d}", "adversarial", confusion)
    if isinstance(spec, str):
        raise InputError(f"unknown annotator kind {spec!r}", field="provider_options.workforce")
    accuracy = float(spec)
    confusion = rng.dirichlet(np.ones(n_labels), size=n_labels) * (1.0 - accuracy)
    np.fill_diagonal(confusion, 0.0)
    # Spread the error mass over the other classes, then put the accuracy on the diagonal.
    row_sums = confusion.sum(axis=1, keepdims=True)
    confusion = np.where(row_sums > 0, confusion / np.where(row_sums > 0, row_sums, 1.0), 0.0)
    confusion *= 1.0 - accuracy
    np.fill_diagonal(confusion, accuracy)
    return Annotator(f"sim-{index:02d}", "accurate", confusion)


def _item_seed(seed: int, item_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{item_id}".encode()).digest()[:8], "little")


class SimulatedWorkforce:
    """A provider whose annotators are simulated from a hidden ground truth.

    Args:
        truth: Item id -> true label.
        workforce: A profile name from `PROFILES`.
        completion: Fraction of items that get labels (simulates a job still in progress).
        seed: Decides the annotators' confusion matrices and every answer.
    """

    name = "simulated"

    def __init__(
        self,
        truth: Mapping[str, str],
        *,
        workforce: str = "mixed",
        completion: float = 1.0,
        seed: int = 0,
    ) -> None:
        if workforce not in PROFILES:
            valid = ", ".join(PROFILES)
            raise InputError(
                f"unknown workforce {workforce!r}; expected one of {valid}",
                field="provider_options.workforce",
            )
        if not 0.0 <= completion <= 1.0:
            raise InputError("must lie in [0, 1]", field="provider_options.completion")
        self.truth = dict(truth)
        self.workforce = workforce
        self.completion = completion
        self.seed = seed
        self._jobs: dict[str, tuple[list[Item], LabelingTask, int]] = {}

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SimulatedWorkforce:
        """Build from `provider_options`: `truth_uri` (required), `workforce`, `completion`, `seed`."""
        from labelloop.sample_data import read_truth

        truth_uri = options.get("truth_uri")
        if not truth_uri:
            raise InputError(
                "the simulated workforce needs a ground truth file",
                field="provider_options.truth_uri",
            )
        return cls(
            read_truth(str(truth_uri)),
            workforce=str(options.get("workforce", "mixed")),
            completion=float(options.get("completion", 1.0)),
            seed=int(options.get("seed", 0)),
        )

    def annotators(self, n_labels: int, minimum: int) -> list[Annotator]:
        """The profile's annotators, repeated with fresh seeds until there are `minimum`."""
        specs = PROFILES[self.workforce]
        count = max(len(specs), minimum)
        return [make_annotator(i, specs[i % len(specs)], n_labels, seed=self.seed) for i in range(count)]

    def submit(
        self,
        items: Sequence[Item],
        task: LabelingTask,
        *,
        labelers_per_item: int,
        instructions: str = "",
    ) -> Job:
        if not task.task_type.is_classification or task.task_type.multi_label:
            raise InputError(
                "the simulated workforce answers single-label classification tasks",
                field="task_type",
            )
        key = job_key(self.name, items, task, labelers_per_item)
        self._jobs[key] = (list(items), task, labelers_per_item)
        return Job(self.name, key, f"sim-{key}", len(items), labelers_per_item)

    def _labeled_items(self, job: Job) -> list[Item]:
        items, _, _ = self._jobs[job.key]
        return [i for i in items if (_item_seed(self.seed + 1, i.id) % 10_000) < self.completion * 10_000]

    def progress(self, job: Job) -> Progress:
        return Progress(len(self._labeled_items(job)), job.items)

    def collect(self, job: Job) -> CollectResult:
        if job.key not in self._jobs:
            raise InputError(f"unknown job {job.key}; submit it first")
        _, task, per_item = self._jobs[job.key]
        labels = list(task.labels)
        index = {label: i for i, label in enumerate(labels)}
        pool = self.annotators(len(labels), per_item)
        annotations: list[Annotation] = []
        bad: list[BadRecord] = []
        for item in self._labeled_items(job):
            true = self.truth.get(item.id)
            if true is None or true not in index:
                reason = "no ground truth" if true is None else f"truth {true!r} not in label set"
                bad.append(BadRecord("simulated-truth", 0, "item", f"{item.id}: {reason}"))
                continue
            rng = np.random.default_rng(_item_seed(self.seed, item.id))
            chosen = rng.choice(len(pool), size=per_item, replace=False)
            for a in sorted(int(c) for c in chosen):
                row = pool[a].confusion[index[true]]
                answer = labels[int(rng.choice(len(labels), p=row))]
                annotations.append(Annotation(item.id, pool[a].id, answer))
        return CollectResult(annotations, bad)

    def cancel(self, job: Job) -> None:
        self._jobs.pop(job.key, None)
