"""Stage 6 (local target): train a scikit-learn classifier on every consolidated label so far."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from labelloop import evaluation, state, storage
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
    eval_items: int = 0
    eval_accuracy: float | None = None
    eval_ci: tuple[float | None, float | None] = (None, None)
    curve: list[dict[str, object]] = dataclasses.field(default_factory=list)


def _rows_for_training(consolidated_uri: str, state_uri: str) -> list[dict[str, object]]:
    """Every trainable consolidated label so far; a later round's label for an item wins."""
    rows: dict[str, dict[str, object]] = dict(state.latest_labels(state_uri))
    this_round, bad = storage.read_jsonl_objects(consolidated_uri)
    if bad:
        log.warning("consolidated labels: %s", summarize_bad_records(bad))
    for _, row in this_round:
        rows[str(row["item"])] = row
    # Rows without the flag come from files written before it existed: they were all trainable.
    return [rows[k] for k in sorted(rows) if rows[k].get("trainable", True)]


def _arm_curve(
    state_uri: str,
    rows: list[dict[str, object]],
    *,
    x: Any,
    y: np.ndarray,
    x_eval: Any,
    y_eval: np.ndarray,
    seed: int,
) -> list[dict[str, object]]:
    """Random arm vs as many active labels, each model scored on the evaluation set."""
    from sklearn.linear_model import LogisticRegression

    arms = evaluation.read_arms(state_uri)
    arm = np.array([arms.get(str(r["item"]), "active") for r in rows])
    random_idx = np.flatnonzero(arm == "random")
    active_idx = np.flatnonzero(arm == "active")
    n = min(random_idx.size, active_idx.size)
    if n < 2:
        return []
    rng = np.random.default_rng(seed)
    points = []
    for name, idx in (("random", random_idx), ("active", active_idx)):
        take = np.sort(rng.choice(idx, size=n, replace=False))
        if len(set(y[take])) < 2:
            return []
        fitted = LogisticRegression(max_iter=2000, C=1.0, random_state=seed)
        fitted.fit(x[take], y[take])
        correct = fitted.predict(x_eval) == y_eval
        points.append(evaluation.curve_point(name, n, correct, seed=seed))
    return points


def _record_use(state_uri: str, model_uri: str, items: list[str]) -> None:
    """Record what the model was trained on: each label (item, labeling job) for `labelloop
    lineage`, and a `use` event in the ledger (what training used, beside the gate's)."""
    import hashlib

    from labelloop import lineage
    from labelloop.ledger import Ledger

    job_of = {item: str(row["job"]) for item, row in lineage.latest_by_item(state_uri).items()}
    round_no = len(state.round_outcomes(state_uri)) + 1
    name = f"round-{round_no}-" + hashlib.sha256(model_uri.encode()).hexdigest()[:8]
    trained_on = [(item, job_of[item]) for item in items if item in job_of]
    lineage.write_model(state_uri, name, trained_on=trained_on, round=round_no, uri=model_uri)
    ledger = Ledger.load(state_uri)
    ledger.append("use", run="", stage="train_model", items=len(items), model=name)
    ledger.compact()


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
    """Fit a logistic regression on this and earlier rounds' labels; evaluate it twice.

    `accuracy` is on a held-out split of the training labels: noisy labels of mostly actively
    selected (hard) items, so it under-states the model. `eval_accuracy` is on the fixed
    evaluation set (`labelloop.evaluation`: a random sample, labeled once, never trained on),
    comparable across rounds. With a random control arm, `curve` has one point per arm: a
    model fit on the random arm's labels and one on as many actively chosen labels, both
    scored on the evaluation set, with 95% bootstrap intervals.

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
    held_out = set(evaluation.eval_ids(state_uri))
    eval_rows = [r for r in rows if str(r["item"]) in held_out]
    rows = [r for r in rows if str(r["item"]) not in held_out]

    def items_of(chosen: list[dict[str, object]]) -> list[Item]:
        return [
            inline.get(str(r["item"])) or Item(id=str(r["item"]), uri=str(r["item"]))
            for r in chosen
        ]

    items = items_of(rows)
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
    eval_accuracy: float | None = None
    eval_ci: tuple[float | None, float | None] = (None, None)
    curve: list[dict[str, object]] = []
    if eval_rows:
        x_eval = featurize(items_of(eval_rows), task)
        y_eval = np.array([str(r["label"]) for r in eval_rows])
        correct = estimator.predict(x_eval) == y_eval
        eval_accuracy = float(correct.mean())
        eval_ci = evaluation.accuracy_interval(correct, seed=seed)
        curve = _arm_curve(state_uri, rows, x=x, y=y, x_eval=x_eval, y_eval=y_eval, seed=seed)
    extra = {
        "accuracy": accuracy,
        "train_items": len(train_idx),
        "test_items": len(test_idx),
        "eval_accuracy": eval_accuracy,
        "eval_items": len(eval_rows),
    }
    model.save(model_uri, extra=extra)
    if state_uri:
        model.save(state.path(state_uri, state.MODELS_LATEST), extra=extra)
        _record_use(state_uri, model_uri, [str(rows[i]["item"]) for i in train_idx])
    result = TrainResult(
        train_items=len(train_idx),
        test_items=len(test_idx),
        accuracy=accuracy,
        labels=label_list,
        confusion_matrix=matrix.astype(int).tolist(),
        eval_items=len(eval_rows),
        eval_accuracy=eval_accuracy,
        eval_ci=eval_ci,
        curve=curve,
    )
    log.info("trained on %d items, held-out accuracy %.3f", len(train_idx), accuracy)
    return result
