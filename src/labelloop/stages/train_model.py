"""Stage 6 (local target): train a scikit-learn classifier on every consolidated label so far."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from labelloop import state, storage
from labelloop.errors import InputError, summarize_bad_records
from labelloop.schemas import Item, TaskType, parse_labels
from labelloop.training.targets import LOCAL_SHAPES, PORTABLE, trained

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """The trained model's evaluation on the held-out split."""

    train_items: int
    test_items: int
    accuracy: float
    labels: list[str]
    confusion_matrix: list[list[int]]


def _rows_for_training(consolidated_uri: str, state_uri: str) -> list[dict[str, object]]:
    """Every trainable consolidated label so far; a later round's label for an item wins."""
    rows: dict[str, dict[str, object]] = {}
    for row in state.labeled_rows(state_uri):
        rows[str(row["item"])] = row
    this_round, bad = storage.read_jsonl_objects(consolidated_uri)
    if bad:
        log.warning("consolidated labels: %s", summarize_bad_records(bad))
    for _, row in this_round:
        rows[str(row["item"])] = row
    # Rows without the flag come from files written before it existed: they were all trainable.
    return [rows[k] for k in sorted(rows) if rows[k].get("trainable", True)]


def train_model(
    *,
    consolidated_uri: str,
    items_uri: str,
    task_type: str,
    labels: str,
    state_uri: str,
    holdout_fraction: float,
    seed: int,
    model_uri: str,
) -> TrainResult:
    """Fit a logistic regression on this and earlier rounds' labels; evaluate on a held-out split.

    Args:
        consolidated_uri: This round's consolidated labels (JSONL: item, label, confidence).
        items_uri: This round's items (import JSONL), for inline text items.
        task_type: A `TaskType` value (single-label image or text classification).
        labels: The label set, comma-separated.
        state_uri: The loop's state: earlier rounds' labels are read from it and the model is
            saved to its `models/latest/` for the next round's selection.
        holdout_fraction: Share of labeled items held out for evaluation.
        seed: Seed of the split and the solver.
        model_uri: The model artifact's folder.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import train_test_split

    from labelloop.stages.generate_import_file import read_import_file
    from labelloop.training.features import featurize
    from labelloop.training.model import LocalModel

    task = TaskType.parse(task_type)
    if task.shape not in LOCAL_SHAPES:
        # Config loading refuses this before a run starts; a template run from the console
        # with another task type still stops here, with the same reason.
        raise InputError(
            f"this trainer learns one label per item ({trained(PORTABLE)}), not {task.value}",
            field="task_type",
        )
    label_list = parse_labels(labels)
    rows = _rows_for_training(consolidated_uri, state_uri)
    from labelloop.ledger import item_records

    # Earlier rounds' items (inline text lives only there), then this round's.
    inline = {k: Item.from_import_record(r) for k, r in item_records(state_uri).items()}
    inline.update({i.id: i for i in read_import_file(items_uri)[0]})
    items = [
        inline.get(str(r["item"])) or Item(id=str(r["item"]), uri=str(r["item"])) for r in rows
    ]
    y = np.array([str(r["label"]) for r in rows])
    if len(set(y)) < 2:
        raise InputError(f"need labels of at least two classes to train, got {sorted(set(y))}")
    x = featurize(items, task)
    index = np.arange(len(items))
    counts = np.unique(y, return_counts=True)[1]
    stratify = y if counts.min() >= 2 and int(len(y) * holdout_fraction) >= len(counts) else None
    train_idx, test_idx = train_test_split(
        index, test_size=holdout_fraction, random_state=seed, stratify=stratify
    )
    estimator = LogisticRegression(max_iter=2000, C=1.0, random_state=seed)
    estimator.fit(x[train_idx], y[train_idx])  # type: ignore[index]
    predicted = estimator.predict(x[test_idx])  # type: ignore[index]
    accuracy = float(np.mean(predicted == y[test_idx]))
    matrix = confusion_matrix(y[test_idx], predicted, labels=label_list)
    model = LocalModel(task, label_list, estimator)
    extra = {"accuracy": accuracy, "train_items": len(train_idx), "test_items": len(test_idx)}
    model.save(model_uri, extra=extra)
    if state_uri:
        model.save(state.path(state_uri, state.MODELS_LATEST), extra=extra)
    result = TrainResult(
        train_items=len(train_idx),
        test_items=len(test_idx),
        accuracy=accuracy,
        labels=label_list,
        confusion_matrix=matrix.astype(int).tolist(),
    )
    log.info("trained on %d items, held-out accuracy %.3f", len(train_idx), accuracy)
    return result
