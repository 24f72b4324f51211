"""The local model: a scikit-learn classifier with its label set, saved beside a JSON manifest."""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from labelloop import storage
from labelloop.schemas import Item, TaskType
from labelloop.training.features import featurize

MODEL_FILE = "model.pkl"
MANIFEST_FILE = "model.json"


@dataclasses.dataclass
class LocalModel:
    """A fitted classifier over a fixed label order (`labels[i]` is column i of the scores)."""

    task_type: TaskType
    labels: list[str]
    estimator: Any

    def predict_proba(self, items: Sequence[Item]) -> np.ndarray:
        """Class probabilities, shape (n_items, n_labels), columns in `labels` order."""
        if not items:
            return np.zeros((0, len(self.labels)))
        features = featurize(items, self.task_type)
        proba = np.asarray(self.estimator.predict_proba(features), dtype=np.float64)
        # The estimator only knows the classes it saw; put them in the label-set columns.
        full = np.zeros((proba.shape[0], len(self.labels)))
        index = {label: i for i, label in enumerate(self.labels)}
        for j, cls in enumerate(self.estimator.classes_):
            full[:, index[str(cls)]] = proba[:, j]
        return full

    def save(self, folder_uri: str, *, extra: dict[str, Any] | None = None) -> None:
        """Write `model.pkl` and `model.json` into `folder_uri`."""
        storage.write_bytes(storage.join(folder_uri, MODEL_FILE), pickle.dumps(self.estimator))
        manifest = {"task_type": self.task_type.value, "labels": self.labels, **(extra or {})}
        storage.write_text(
            storage.join(folder_uri, MANIFEST_FILE), json.dumps(manifest, indent=2, sort_keys=True)
        )

    @classmethod
    def load(cls, folder_uri: str) -> LocalModel:
        """Load a model written by `save` (a trusted location: our own state folder)."""
        manifest = json.loads(storage.read_text(storage.join(folder_uri, MANIFEST_FILE)))
        # Pickle is safe here only because the file is our own pipeline's output.
        estimator = pickle.loads(storage.read_bytes(storage.join(folder_uri, MODEL_FILE)))  # noqa: S301
        return cls(TaskType(manifest["task_type"]), list(manifest["labels"]), estimator)

    @staticmethod
    def exists(folder_uri: str) -> bool:
        """Whether a saved model is at `folder_uri`."""
        return bool(folder_uri) and storage.exists(storage.join(folder_uri, MANIFEST_FILE))
