"""The simulated workforce: deterministic, faithful to its confusion matrices, all task types."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from labelloop.providers.base import LabelingTask
from labelloop.providers.simulated import SimulatedWorkforce, uniforms
from labelloop.schemas import Box, Item, Span, TaskType

LABELS = ("a", "b", "c", "d")


def _items(n: int) -> list[Item]:
    return [Item(f"gs://b/{i:05d}.png", uri=f"gs://b/{i:05d}.png") for i in range(n)]


def _truth(items: list[Item]) -> dict[str, str]:
    return {it.id: LABELS[i % len(LABELS)] for i, it in enumerate(items)}


def test_uniforms_are_uniform_and_independent_across_streams() -> None:
    u = uniforms(np.arange(20_000, dtype=np.uint64), 3)
    assert u.shape == (20_000, 3)
    assert ((u >= 0) & (u < 1)).all()
    assert np.histogram(u[:, 0], bins=10, range=(0, 1))[0].min() > 1800
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.03


def test_answers_follow_each_annotators_accuracy_and_are_deterministic() -> None:
    items = _items(6000)
    truth = _truth(items)
    task = LabelingTask(TaskType.IMAGE_CLASSIFICATION, LABELS)
    sim = SimulatedWorkforce(truth, workforce="noisy", seed=4)
    job = sim.submit(items, task, labelers_per_item=3)
    got = sim.collect(job).annotations
    assert len(got) == 3 * len(items)
    assert len({(a.item, a.annotator) for a in got}) == len(got)
    again = SimulatedWorkforce(truth, workforce="noisy", seed=4)
    assert again.collect(again.submit(items, task, labelers_per_item=3)).annotations == got

    pool = {a.id: a for a in sim.annotators(len(LABELS), 3)}
    hits: dict[str, list[bool]] = {}
    for a in got:
        hits.setdefault(a.annotator, []).append(a.value == truth[a.item])
    for annotator, h in hits.items():
        expected = pool[annotator].accuracy
        assert np.mean(h) == pytest.approx(expected, abs=0.04), annotator
    kinds = {a.id: a.kind for a in pool.values()}
    spammer = next(k for k, v in kinds.items() if v == "spammer")
    assert len({a.value for a in got if a.annotator == spammer}) == 1
    adversary = next(k for k, v in kinds.items() if v == "adversarial")
    assert not any(a.value == truth[a.item] for a in got if a.annotator == adversary)
    # Annotators are picked evenly.
    counts = Counter(a.annotator for a in got)
    assert max(counts.values()) / min(counts.values()) < 1.15


def test_completion_leaves_items_unlabeled_and_reports_missing_truth() -> None:
    items = _items(2000)
    truth = _truth(items)
    del truth[items[0].id]
    sim = SimulatedWorkforce(truth, completion=0.3, seed=1)
    job = sim.submit(
        items, LabelingTask(TaskType.IMAGE_CLASSIFICATION, LABELS), labelers_per_item=2
    )
    progress = sim.progress(job)
    assert 0.25 < progress.labeled / progress.total < 0.35
    assert not progress.done
    got = sim.collect(job)
    assert len({a.item for a in got.annotations}) + len(got.bad) == progress.labeled


def test_multilabel_boxes_and_spans() -> None:
    items = _items(300)
    multi = {it.id: "a|c" if i % 2 else "b" for i, it in enumerate(items)}
    sim = SimulatedWorkforce(multi, workforce="expert", seed=2)
    task = LabelingTask(TaskType.IMAGE_MULTILABEL_CLASSIFICATION, LABELS)
    got = sim.collect(sim.submit(items, task, labelers_per_item=3)).annotations
    exact = np.mean([a.value == frozenset(multi[a.item].split("|")) for a in got])
    assert exact > 0.85
    assert all(isinstance(a.value, frozenset) for a in got)

    box_truth = {
        it.id: (Box(0.1, 0.2, 0.5, 0.6, "a"), Box(0.6, 0.6, 0.9, 0.95, "b")) for it in items
    }
    sim = SimulatedWorkforce(box_truth, workforce="expert", seed=3)
    task = LabelingTask(TaskType.IMAGE_OBJECT_DETECTION, LABELS)
    got = sim.collect(sim.submit(items, task, labelers_per_item=2)).annotations
    boxes = [b for a in got for b in a.value]  # type: ignore[union-attr]
    assert all(isinstance(b, Box) and 0 <= b.x_min < b.x_max <= 1 for b in boxes)
    assert 0.9 * 2 * len(got) < len(boxes) <= 2 * len(got)
    first = [b for b in boxes if isinstance(b, Box) and b.x_max < 0.55]
    assert np.mean([b.x_min for b in first]) == pytest.approx(0.1, abs=0.01)

    text_items = [Item(f"text:{i}", text="Ada lives in London") for i in range(200)]
    span_truth = {it.id: (Span(0, 3, "a"), Span(13, 19, "c")) for it in text_items}
    sim = SimulatedWorkforce(span_truth, workforce="expert", seed=5)
    task = LabelingTask(TaskType.TEXT_ENTITY_EXTRACTION, LABELS)
    got = sim.collect(sim.submit(text_items, task, labelers_per_item=2)).annotations
    exact = np.mean([a.value == span_truth[a.item] for a in got])
    assert exact > 0.85


def test_wrong_truth_shape_is_reported_not_answered() -> None:
    items = _items(3)
    sim = SimulatedWorkforce({it.id: "zzz" for it in items})
    job = sim.submit(
        items, LabelingTask(TaskType.IMAGE_CLASSIFICATION, LABELS), labelers_per_item=1
    )
    got = sim.collect(job)
    assert got.annotations == []
    assert [b.field for b in got.bad] == ["item"] * 3
    assert "not in label set" in got.bad[0].reason
