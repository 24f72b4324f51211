"""The report's sections about the model: how the batch was chosen, the model, across rounds.

Like `labelloop.report.sections`: each builder takes the `ReportData` and returns the context of
one template under `templates/sections/`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from labelloop.report import plots
from labelloop.report.data import ReportData, integer, matrix, number
from labelloop.report.data import per_class_scores as class_scores
from labelloop.report.format import Figure, fmt, kpis, plot
from labelloop.report.guidance import csv_data_uri
from labelloop.report.quality_facts import CURVE_HEAD, curve_points
from labelloop.report.sections import COLD_START_HOW, MAX_CLASSES_PLOTTED, Context

# Active learning ------------------------------------------------------------------------------


def _class_mix_figure(mix: dict[str, Any]) -> Figure:
    names = [str(k) for k in mix]
    # Counts: anything that is not a finite non-negative number counts as none.
    given = [number(v) for v in mix.values()]
    values = np.array([c if c is not None and 0.0 <= c < math.inf else 0.0 for c in given])
    caption = ""
    if len(names) > MAX_CLASSES_PLOTTED:
        keep = np.sort(np.argsort(-values, kind="stable")[:MAX_CLASSES_PLOTTED])
        caption = f"The {MAX_CLASSES_PLOTTED} most frequent of {len(names)} classes."
        names, values = [names[i] for i in keep], values[keep]
    return plot(
        lambda: plots.column_png(
            names, values, title="Predicted class of the selected items", ylabel="items"
        ),
        "Class mix",
        caption,
    )


def active_learning(data: ReportData) -> Context:
    """How the batch was chosen: score histogram and predicted class mix."""
    s = data.selection
    if not s:
        return {
            "lead": "How this round's batch was chosen.",
            "facts": [],
            "warnings": ["The selection summary is missing."],
            "figures": [],
        }
    cold = bool(s.get("cold_start"))
    facts = kpis(
        [
            ("strategy", str(s.get("strategy", "n/a"))),
            ("pool", fmt(integer(s.get("pool")))),
            ("selected", fmt(integer(s.get("selected")))),
            ("bad records", fmt(integer(s.get("bad_records")))),
        ]
    )
    warn = []
    if cold:
        strategy = str(s.get("strategy", ""))
        how = COLD_START_HOW.get(strategy, f"chosen by {strategy or 'the strategy'}")
        warn.append(
            f"Cold start: no model yet, so the batch is {how}; it has no uncertainty scores"
            " or predicted classes."
        )
    figures = []
    hist = s.get("score_histogram")
    if isinstance(hist, dict) and not cold:
        counts = np.array([number(c) or 0.0 for c in hist.get("counts", [])])
        edges = np.array([number(e) or 0.0 for e in hist.get("edges", [])])
        if len(counts) and len(edges) == len(counts) + 1:
            figures.append(
                plot(
                    lambda: plots.histogram_png(
                        counts,
                        edges,
                        title="Uncertainty of the selected items",
                        xlabel="score (higher = the model is less sure)",
                    ),
                    "Score histogram",
                )
            )
    mix = s.get("predicted_class_mix")
    if isinstance(mix, dict) and mix:
        figures.append(_class_mix_figure(mix))
    elif not cold:
        warn.append("The selected batch has no predicted class mix.")
    return {
        "lead": "How this round's batch was chosen from the unlabeled pool.",
        "facts": facts,
        "warnings": warn,
        "figures": figures,
    }


# Model ----------------------------------------------------------------------------------------


def learning_curve(data: ReportData) -> Context:
    """The active and random arms on the evaluation set across rounds: a plot and its CSV."""
    points = curve_points(data.rounds)
    if not points:
        return {"curve": None, "curve_csv": ""}
    arms: dict[str, list[list[float]]] = {}
    for _, arm, labels, accuracy, low, high in points:
        nan = float("nan")
        arms.setdefault(arm, []).append(
            [labels, accuracy, nan if low is None else low, nan if high is None else high]
        )
    ordered = {a: np.array(sorted(rows)) for a, rows in sorted(arms.items())}
    return {
        "curve": plot(
            lambda: plots.learning_curve_png(ordered),
            "Learning curve on the evaluation set: active against random labels",
            "Each round trains one model per arm on as many labels of that arm; bars are 95%"
            " intervals. Active above random: active selection pays on this data.",
        ),
        "curve_csv": csv_data_uri(CURVE_HEAD, points),
    }


def model(data: ReportData) -> Context:
    """Held-out metrics, per-class scores and the confusion matrix."""
    o = data.outcome
    if not data.trained:
        return {
            "lead": "A model is trained, on every consolidated label so far, only when both"
            " gates open.",
            "empty": f"No model this round: {data.reason or 'training did not run'}.",
        }
    labels = [str(v) for v in o.get("labels", [])] if isinstance(o.get("labels"), list) else []
    cm = matrix(o.get("confusion_matrix"))
    raw_ci = o.get("eval_ci")
    ci: list[Any] = raw_ci if isinstance(raw_ci, list) and raw_ci else [None, None]
    facts = kpis(
        [
            ("evaluation-set accuracy", fmt(o.get("eval_accuracy"))),
            ("95% interval", f"[{fmt(number(ci[0]))}, {fmt(number(ci[-1]))}]"),
            ("evaluation items", fmt(integer(o.get("eval_items")))),
            ("held-out accuracy (noisy labels)", fmt(o.get("accuracy"))),
            ("train items", fmt(integer(o.get("train_items")))),
            ("test items", fmt(integer(o.get("test_items")))),
        ]
    )
    out: Context = {
        "lead": "The evaluation-set accuracy is on a fixed random sample, labeled once and never"
        " trained on: compare it across rounds. The held-out figure is on noisy labels of"
        " mostly actively selected (hard) items and under-states the model.",
        "empty": "",
        "facts": facts,
        "per_class": [],
        "figure": None,
        **learning_curve(data),
    }
    if cm is None or not labels or cm.shape != (len(labels), len(labels)):
        out["note"] = "The training outcome carries no confusion matrix."
        return out
    scores = class_scores(cm)
    out["per_class"] = [
        [name, fmt(p, ".2f"), fmt(r, ".2f"), fmt(f, ".2f"), fmt(integer(n))]
        for name, p, r, f, n in zip(
            labels,
            scores["precision"],
            scores["recall"],
            scores["f1"],
            scores["support"],
            strict=True,
        )
    ]
    out["figure"] = plot(
        lambda: plots.heatmap_png(
            cm,
            row_labels=labels,
            col_labels=labels,
            title="Confusion matrix (held-out)",
            xlabel="predicted",
            ylabel="consolidated label",
            vmax=max(1.0, float(np.nanmax(cm))),
            fmt=".0f",
            colorbar="items",
        ),
        "Model confusion matrix",
    )
    out["note"] = ""
    return out


# Across rounds --------------------------------------------------------------------------------


def labels_used(rounds: Sequence[dict[str, Any]]) -> np.ndarray:
    """Labels behind each round: train+test items when a model was trained, else the last
    trained round's count plus the labels gathered since (what the next model would use)."""
    out = []
    running = 0.0
    for r in rounds:
        used = number(r.get("labels_used"))
        if used is None and number(r.get("train_items")) is not None:
            used = (number(r.get("train_items")) or 0.0) + (number(r.get("test_items")) or 0.0)
        if used is not None and r.get("trained"):
            running = used
        else:
            running += number(r.get("label_count")) or 0.0
        out.append(running)
    return np.array(out, dtype=float)


def rounds(data: ReportData) -> Context:
    """Labels used against model accuracy, one point per round."""
    recorded = data.rounds
    if not recorded:
        return {"lead": "One point per round.", "empty": "No rounds recorded."}
    used = labels_used(recorded)
    # The fixed evaluation set's accuracy when recorded (comparable across rounds), else the
    # held-out figure of older rounds.
    accuracy = np.array(
        [
            (number(r.get("eval_accuracy")) or number(r.get("accuracy")))
            if r.get("trained")
            else None
            for r in recorded
        ],
        dtype=float,
    )
    names = [f"r{i}" for i in range(1, len(recorded) + 1)]
    current = next(
        (i for i, r in enumerate(recorded) if r.get("run_id") == data.run_id), len(recorded) - 1
    )
    figure = plot(
        lambda: plots.rounds_png(used, accuracy, names=names, current=current),
        "Model accuracy across rounds",
        "Each point is one round; the circled point is this run.",
    )
    rows = [
        {
            "name": names[i],
            "this": i == current,
            "finished": str(r.get("finished_at", ""))[:19].replace("T", " "),
            "labels": fmt(integer(r.get("label_count"))),
            "agreement": fmt(r.get("agreement")) if r.get("agreement") is not None else "null",
            "used": fmt(integer(used[i])),
            "accuracy": fmt(r.get("accuracy")) if r.get("trained") else "–",
            "eval": fmt(r.get("eval_accuracy")) if r.get("trained") else "–",
            "outcome": str(r.get("reason", "")),
        }
        for i, r in enumerate(recorded)
    ]
    lead = (
        f"{len(recorded)} round(s) recorded in the loop's state: is more labeling still paying off?"
    )
    if len(recorded) == 1:
        lead += " The first round has no trend yet."
    return {"lead": lead, "empty": "", "figure": figure, "rows": rows}
