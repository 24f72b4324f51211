"""Stage 2: pick the items humans should label next (active learning, or a seeded cold start)."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np

from labelloop import state, storage
from labelloop.active_learning.strategies import least_confidence, random_sample, top_k
from labelloop.errors import InputError
from labelloop.schemas import TaskType, parse_labels
from labelloop.stages.generate_import_file import read_import_file

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SelectionResult:
    """What stage 2 picked and how."""

    pool: int
    selected: int
    strategy: str
    cold_start: bool
    mean_score: float


def select_for_labeling(
    *,
    import_uri: str,
    state_uri: str,
    task_type: str,
    labels: str,
    strategy: str,
    k: int,
    seed: int,
    output_uri: str,
    summary_uri: str,
) -> SelectionResult:
    """Score the pool with the previous round's model and keep the `k` most uncertain.

    Without a model (the first round) or with `strategy="random"`, a seeded random sample.

    Args:
        import_uri: The pool: the import JSONL from stage 1.
        state_uri: The loop's state (its `models/latest/` is the previous round's model).
        task_type: A `TaskType` value.
        labels: The label set, comma-separated.
        strategy: `random` or `least_confidence`.
        k: How many items to select.
        seed: Seed for the random sample.
        output_uri: Where to write the selected items (a Vertex import JSONL).
        summary_uri: Where to write the selection summary (JSON: scores, histogram, class mix).
    """
    if strategy not in ("random", "least_confidence"):
        raise InputError(f"unknown strategy {strategy!r}", field="selection_strategy")
    task = TaskType.parse(task_type)
    label_list = parse_labels(labels)
    items, bad = read_import_file(import_uri)
    model_uri = state.path(state_uri, state.MODELS_LATEST) if state_uri else ""
    from labelloop.training.model import LocalModel

    cold_start = strategy == "random" or not LocalModel.exists(model_uri)
    scores = np.zeros(len(items))
    predicted: list[str] = []
    if cold_start:
        chosen = random_sample(len(items), k, seed=seed)
    else:
        model = LocalModel.load(model_uri)
        proba = model.predict_proba(items)
        scores = least_confidence(proba)
        chosen = top_k(scores, k)
        predicted = [model.labels[j] for j in proba.argmax(axis=1)] if len(items) else []
    selected = [items[i] for i in chosen]
    storage.write_jsonl(output_uri, (item.to_import_record(task) for item in selected))
    chosen_scores = scores[chosen] if len(chosen) else np.zeros(0)
    hist, edges = np.histogram(chosen_scores, bins=10, range=(0.0, 1.0))
    class_mix = {label: 0 for label in label_list}
    for i in chosen:
        if predicted:
            class_mix[predicted[i]] += 1
    summary = {
        "strategy": "random" if cold_start else strategy,
        "cold_start": cold_start,
        "pool": len(items),
        "selected": len(selected),
        "bad_records": len(bad),
        "items": [
            {"item": items[i].id, "score": float(scores[i]), "predicted": predicted[i] if predicted else None}
            for i in chosen
        ],
        "score_histogram": {"counts": hist.tolist(), "edges": edges.tolist()},
        "predicted_class_mix": class_mix if predicted else {},
    }
    storage.write_text(summary_uri, json.dumps(summary, indent=1, sort_keys=True))
    result = SelectionResult(
        pool=len(items),
        selected=len(selected),
        strategy=summary["strategy"],
        cold_start=cold_start,
        mean_score=float(chosen_scores.mean()) if len(chosen_scores) else 0.0,
    )
    log.info("selection: %s", result)
    return result
