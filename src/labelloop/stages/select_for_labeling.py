"""Stage 2: pick the items humans should label next (active learning, or a cold start)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from labelloop import costs, evaluation, state, storage
from labelloop.accounting import Plan, plan
from labelloop.active_learning import strategies
from labelloop.errors import BadRecord, InputError, summarize_bad_records
from labelloop.schemas import Item, TaskType, ml_use_for, parse_labels, text_item_id
from labelloop.stages.generate_import_file import read_import_file

log = logging.getLogger(__name__)

HISTOGRAM_EDGES = np.linspace(0.0, 1.0, 11)
BAD_RECORDS_IN_SUMMARY = 100


@dataclasses.dataclass(frozen=True)
class SelectionResult:
    """What stage 2 picked and how."""

    pool: int
    selected: int
    strategy: str
    cold_start: bool
    mean_score: float
    wanted: int = 0
    stop_reason: str = ""


def _excluded_ids(state_uri: str) -> set[str]:
    """Items the ledger has queued in an open job or labeled, and earlier consolidated labels."""
    ids = state.imported_ids(state_uri)
    ids.update(str(row["item"]) for row in state.labeled_rows(state_uri) if "item" in row)
    return ids


def _summary(
    *,
    strategy: str,
    cold_start: bool,
    pool: int,
    chosen: list[dict[str, Any]],
    bad: list[Any],
    bad_count: int,
    labels: list[str],
    excluded: int,
    class_balance: bool,
    source: str,
    pool_histogram: dict[str, list[Any]] | None,
) -> dict[str, Any]:
    scores = np.asarray([c["score"] for c in chosen], dtype=np.float64)
    hist, edges = np.histogram(np.clip(scores, 0.0, 1.0), bins=HISTOGRAM_EDGES)
    mix: dict[str, int] = {}
    if not cold_start:
        mix = dict.fromkeys(labels, 0)
        for c in chosen:
            if c["predicted"] is not None:
                mix[c["predicted"]] = mix.get(c["predicted"], 0) + 1
    return {
        "strategy": strategy,
        "cold_start": cold_start,
        "pool": pool,
        "selected": len(chosen),
        "bad_records": bad_count,
        "items": chosen,
        "score_histogram": {"counts": hist.tolist(), "edges": edges.tolist()},
        "predicted_class_mix": mix,
        # Additions beyond the contract.
        "excluded": excluded,
        "class_balance": class_balance,
        "source": source,
        "pool_score_histogram": pool_histogram,
        "bad": [
            {"source": b.source, "line": b.line, "field": b.field, "reason": b.reason}
            for b in bad[:BAD_RECORDS_IN_SUMMARY]
        ],
    }


def _item_for(
    content: str, item_id: str, pool: dict[str, Item], roots: Sequence[str]
) -> Item | None:
    """The import-file item of a selected prediction (from the pool when it is there); None
    for a path outside the source (`roots`), which is refused and never read."""
    if item_id in pool:
        return pool[item_id]
    if item_id == text_item_id(content):
        return Item(id=item_id, text=content, ml_use=ml_use_for(item_id))
    if not storage.inside(item_id, roots):
        return None
    return Item(id=item_id, uri=item_id, ml_use=ml_use_for(item_id))


@dataclasses.dataclass(frozen=True)
class _Refused:
    record: BadRecord
    field_value: str


def _outside(source: str, item: str, roots: Sequence[str]) -> _Refused:
    where = ", ".join(roots) or "no source given"
    reason = f"{item}: outside the source ({where}): refused, never read"
    return _Refused(BadRecord(source, 0, "item", reason), item)


# Rounds of re-selection when picks were refused as outside the source (each excludes them).
MAX_RESELECT = 3


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
    predictions_uri: str = "",
    class_balance: bool = False,
    random_share: float = 0.0,
    eval_size: int = 0,
    source_uri: str = "",
    allowed_roots: Sequence[str] = (),
    queue_size: int = 0,
    budget: str = "{}",
    labelers_per_item: int = 1,
    provider: str = "",
    provider_options: str = "{}",
    rejects_uri: str = "",
) -> SelectionResult:
    """Score the pool and keep the items most worth labeling: the open queue is topped up.

    Backpressure: at most `k` items, and no more than the room left in the open queue
    (`queue_size` minus the items queued in open jobs after this run's reconcile; `queue_size`
    0 means `k`). A full queue selects nothing, and the run labels nothing new.

    With `predictions_uri` the scores come from those predictions (a Vertex batch-prediction
    output folder / prefix, or a predictions JSONL), streamed in bounded memory. Otherwise the
    previous round's local model (`models/latest/` under `state_uri`) scores the import pool;
    batch-aware strategies also use its input features (`training.features.featurize`). Without
    a model (the first round) it is a cold start: k-center diversity sampling on the input
    features for `k_center` / `cluster_margin`, a seeded random sample otherwise.

    Items queued or labeled in the ledger (per `state_uri`) are never selected; items returned
    to the pool (a cancelled, failed or expired job) can be selected again.

    Args:
        import_uri: The pool: the import JSONL from stage 1.
        state_uri: The loop's state (earlier labels, imports and the latest model).
        task_type: A `TaskType` value.
        labels: The label set, comma-separated.
        strategy: One of `strategies.STRATEGIES`.
        k: How many items to select.
        seed: Seed for random picks, k-center's first pick and k-means.
        output_uri: Where to write the selected items (a Vertex import JSONL).
        summary_uri: Where to write the selection summary (JSON: scores, histogram, class mix).
        predictions_uri: Predictions to score with instead of the local model ("" = local).
        class_balance: Spread an uncertainty strategy's picks evenly over predicted classes.
        random_share: Share of the batch picked at random: the control arm that shows
            whether active selection helps on this data (`labelloop.evaluation`).
        eval_size: Size of the fixed evaluation set: a random sample of the pool chosen once,
            labeled once (on top of the first batch), never trained on.
        source_uri: The source the pool was listed from: a predicted item that is not in the
            pool must lie inside it (or inside `allowed_roots`), else it is refused, counted as
            a bad record of the predictions and never read.
        allowed_roots: Further folders or `gs://` prefixes predicted items may come from.
        queue_size: The open queue's size in items (0: `k`).
        budget: The pipeline's `budget` JSON: with a limit, fewer items are selected rather
            than overspend (evaluation items included), and none once the budget is spent,
            counting what open jobs have yet to cost (`stop_reason` says so).
        labelers_per_item: Human labels per item, for the cost estimate.
        provider: The labeling provider, for the model's share of the cost estimate.
        provider_options: Its options (the Gemini model), for the same.
        rejects_uri: Where to write every bad record (JSONL: source, line, field, reason): the
            pool's, refused predicted items and bad prediction lines (the first 10,000 of those).

    Items the quality step sent back for more answers (`labelloop.relabel`) take a slot of
    the active arm when their expected error beats the new item they displace.

    Raises:
        InputError: Unknown strategy or task type, k < 1, or predictions not found.
    """
    if strategy not in strategies.STRATEGIES:
        raise InputError(
            f"unknown strategy {strategy!r}; expected one of {', '.join(strategies.STRATEGIES)}",
            field="selection_strategy",
        )
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}", field="selection_size")
    if queue_size < 0:
        raise InputError(f"must be 0 or more, got {queue_size}", field="queue_size")
    from labelloop.stages.reconcile import queue_room

    room, queued = queue_room(state_uri, queue_size=queue_size, selection_size=k)
    task = TaskType.parse(task_type)
    label_list = parse_labels(labels)
    # The evaluation set's items still to label come on top of the batch: the budget covers both.
    money = _budget_plan(
        budget, state_uri=state_uri, wanted=room + max(eval_size, 0),
        labelers_per_item=labelers_per_item, provider=provider,
        provider_options=provider_options, is_image=task.is_image,
    )  # fmt: skip
    items, bad = read_import_file(import_uri)
    if bad:
        log.warning("pool: %s", summarize_bad_records(bad))
    rejected: list[BadRecord] = list(bad)
    excluded_ids = _excluded_ids(state_uri)
    _record_pool(state_uri, items)
    if room == 0 or money.affordable == 0:
        if money.stop_reason:
            log.warning("selection: %s", money.stop_reason)
        else:
            log.info("the open queue is full (%d item(s) queued): nothing to top up", queued)
        pool = len(items) - len(excluded_ids & {i.id for i in items})
        _write_rejects(rejects_uri, rejected)
        return _write_selection(
            [],
            _summary(
                strategy=strategy, cold_start=False, pool=pool,
                chosen=[], bad=bad, bad_count=len(bad), labels=label_list,
                excluded=len(excluded_ids), class_balance=class_balance, source="none",
                pool_histogram=None,
            ),
            task=task, output_uri=output_uri, summary_uri=summary_uri, queued=queued, room=room,
            cold_start=False, used=strategy, money=money,
        )  # fmt: skip
    k_active, k_random = evaluation.split_batch(room, random_share)
    eval_set = evaluation.ensure_eval_set(
        state_uri, [i.id for i in items], size=eval_size, seed=seed, excluded=excluded_ids
    )
    eval_todo = [i for i in eval_set if i not in excluded_ids]
    excluded_ids |= set(eval_set)
    if money.affordable < room + len(eval_todo):
        # The evaluation items come first (labeled once); the batch shrinks to what is left.
        eval_todo = eval_todo[: money.affordable]
        k_active, k_random = evaluation.split_batch(
            min(room, money.affordable - len(eval_todo)), random_share
        )
    k = max(k_active, 0)

    if predictions_uri:
        from labelloop.active_learning.predictions import select_from_predictions

        roots = [r for r in (source_uri, *allowed_roots) if r]
        pool_items = {item.id: item for item in items}
        refused: list[_Refused] = []
        for _ in range(MAX_RESELECT + 1):
            picked = select_from_predictions(
                predictions_uri,
                k,
                strategy=strategy,
                seed=seed,
                exclude_ids=excluded_ids | {b.field_value for b in refused},
                labels=label_list,
                class_balance=class_balance,
            )
            outside = [
                p for p in picked.items if _item_for(p.content, p.item, pool_items, roots) is None
            ]
            if not outside:
                break
            refused += [_outside(predictions_uri, p.item, roots) for p in outside]
        kept = [
            (p, item)
            for p in picked.items
            if (item := _item_for(p.content, p.item, pool_items, roots)) is not None
        ]
        if refused:
            log.warning("%d predicted item(s) outside the source refused", len(refused))
        selected = [item for _, item in kept]
        picked = dataclasses.replace(picked, items=[p for p, _ in kept])
        chosen = [
            {"item": p.item, "score": p.score, "predicted": p.predicted} for p in picked.items
        ]
        rejected = bad + [r.record for r in refused] + picked.bad
        summary = _summary(
            strategy=strategy,
            cold_start=False,
            pool=picked.pool,
            chosen=chosen,
            bad=rejected,
            bad_count=len(bad) + len(refused) + picked.bad_records,
            labels=label_list,
            excluded=picked.excluded,
            class_balance=class_balance,
            source=predictions_uri,
            pool_histogram=picked.pool_histogram,
        )
        cold_start = False
        used = strategy
    else:
        selected, summary = _select_local(
            items,
            task=task,
            labels=label_list,
            state_uri=state_uri,
            strategy=strategy,
            k=k,
            seed=seed,
            excluded_ids=excluded_ids,
            class_balance=class_balance,
            bad=bad,
        )
        cold_start = bool(summary["cold_start"])
        used = str(summary["strategy"])
    if k_random or eval_todo or state_uri:
        batch_pool = list({i.id: i for i in [*items, *selected]}.values())
        selected, summary["items"], arms = evaluation.compose_batch(
            state_uri=state_uri,
            pool=batch_pool,
            active=summary["items"],
            k_active=k,
            k_random=k_random,
            eval_todo=eval_todo,
            excluded=excluded_ids,
            seed=seed,
        )
        summary["selected"] = len(selected)
        summary["arms"] = {a: sum(1 for v in arms.values() if v == a) for a in set(arms.values())}
        evaluation.record_arms(state_uri, arms)
    _write_rejects(rejects_uri, rejected)
    return _write_selection(
        selected, summary, task=task, output_uri=output_uri, summary_uri=summary_uri,
        queued=queued, room=room, cold_start=cold_start, used=used, money=money,
    )  # fmt: skip


def _write_rejects(uri: str, rejected: list[BadRecord]) -> None:
    """The step's bad records as JSONL (an empty file when there are none)."""
    if uri:
        from labelloop.annotations import write_bad_records

        write_bad_records(uri, rejected)


def _budget_plan(
    budget: str,
    *,
    state_uri: str,
    wanted: int,
    labelers_per_item: int,
    provider: str,
    provider_options: str,
    is_image: bool,
) -> Plan:
    """How many of `wanted` items the budget affords (`labelloop.accounting.plan`)."""
    from labelloop.ledger import Ledger

    options = costs.parse_budget(budget)
    try:
        provider_opts = json.loads(provider_options or "{}")
    except json.JSONDecodeError:
        raise InputError("not a JSON object", field="provider_options") from None
    model_usd = costs.model_item_estimate(
        provider, provider_opts if isinstance(provider_opts, dict) else {}, is_image=is_image
    )
    money = plan(
        Ledger.load(state_uri),
        options,
        wanted=wanted,
        labelers_per_item=labelers_per_item,
        model_usd_per_item=model_usd,
    )
    if options.min_gain_per_usd is None or money.affordable == 0:
        return money
    from labelloop import stop_rule

    # The stop rule on the fixed evaluation set's learning curve: stop once a dollar buys less
    # accuracy than the configured floor.
    advice = stop_rule.advise(
        stop_rule.curve_from_rounds(state.round_outcomes(state_uri)),
        min_gain_per_100=options.min_gain_per_100,
        min_gain_per_usd=options.min_gain_per_usd,
    )
    if advice.stop_selection:
        log.warning("selection: %s", advice.reason)
        return dataclasses.replace(money, affordable=0, stop_reason=advice.reason)
    return money


def _record_pool(state_uri: str, items: list[Item]) -> None:
    """Tell the ledger how many source items it has never seen (the never-sent pool)."""
    if not state_uri:
        return
    from labelloop.ledger import Ledger

    ledger = Ledger.load(state_uri)
    unseen = sum(1 for i in items if i.id not in ledger.state.items)
    if unseen != ledger.state.unseen:
        ledger.append("listed", run="", unseen=unseen)
        ledger.compact()


def _write_selection(
    selected: list[Item],
    summary: dict[str, Any],
    *,
    task: TaskType,
    output_uri: str,
    summary_uri: str,
    queued: int,
    room: int,
    cold_start: bool,
    used: str,
    money: Plan,
) -> SelectionResult:
    summary["queue"] = {"queued_before": queued, "room": room}
    summary["budget"] = money.to_json()
    summary["stop_reason"] = money.stop_reason
    storage.write_jsonl(output_uri, (item.to_import_record(task) for item in selected))
    storage.write_text(summary_uri, json.dumps(summary, indent=1, sort_keys=True))
    scores = [c["score"] for c in summary["items"]]
    result = SelectionResult(
        pool=int(summary["pool"]),
        selected=len(selected),
        strategy=used,
        cold_start=cold_start,
        mean_score=float(np.mean(scores)) if scores else 0.0,
        wanted=money.wanted,
        stop_reason=money.stop_reason,
    )
    log.info("selection: %s", result)
    return result


def _select_local(
    items: list[Item],
    *,
    task: TaskType,
    labels: list[str],
    state_uri: str,
    strategy: str,
    k: int,
    seed: int,
    excluded_ids: set[str],
    class_balance: bool,
    bad: list[Any],
) -> tuple[list[Item], dict[str, Any]]:
    """Select from the import pool with the local model (or a cold start)."""
    from labelloop.training.model import LocalModel

    exclude = np.fromiter((item.id in excluded_ids for item in items), dtype=bool, count=len(items))
    model_uri = state.path(state_uri, state.MODELS_LATEST) if state_uri else ""
    has_model = LocalModel.exists(model_uri)
    proba: np.ndarray | None = None
    model_labels = labels
    if has_model and strategy != "random" and items:
        model = LocalModel.load(model_uri)
        proba = model.predict_proba(items)
        model_labels = model.labels
    features: Any = None
    labeled_features: Any = None
    if strategies.needs_features(strategy) and items:
        from labelloop.training.features import featurize

        features = featurize(items, task)
        if task.is_image:
            labeled = sorted({str(r["item"]) for r in state.labeled_rows(state_uri) if "item" in r})
            labeled_items = [Item(id=i, uri=i) for i in labeled if not i.startswith("text:")]
            if labeled_items:
                labeled_features = featurize(labeled_items, task)
    if task.is_text and strategy == "cluster_margin" and proba is not None:
        # Hashed n-grams are too wide to cluster densely: cluster the model's outputs instead.
        features = proba
    picked = strategies.select(
        strategy,
        k,
        seed=seed,
        n=len(items),
        proba=proba,
        features=features,
        labeled_features=labeled_features,
        exclude=exclude,
        class_balance=class_balance,
    )
    predicted: list[str | None] = [None] * len(items)
    if proba is not None and len(items):
        predicted = [model_labels[j] for j in proba.argmax(axis=1)]
    chosen = [
        {"item": items[i].id, "score": float(picked.scores[i]), "predicted": predicted[i]}
        for i in picked.indices
    ]
    summary = _summary(
        strategy=picked.strategy,
        cold_start=picked.cold_start,
        pool=int(len(items) - exclude.sum()),
        chosen=chosen,
        bad=bad,
        bad_count=len(bad),
        labels=labels,
        excluded=int(exclude.sum()),
        class_balance=class_balance,
        source="local_model" if proba is not None else "none",
        pool_histogram=(
            {
                "counts": np.histogram(
                    np.clip(picked.scores[~exclude], 0, 1), bins=HISTOGRAM_EDGES
                )[0].tolist(),
                "edges": HISTOGRAM_EDGES.tolist(),
            }
            if proba is not None
            else None
        ),
    )
    return [items[i] for i in picked.indices], summary
