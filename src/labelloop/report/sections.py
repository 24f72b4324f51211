"""What each section of the run report shows, prepared in Python for its template.

Every builder takes the `ReportData` and returns the context of one template under
`templates/sections/` (plain values: strings already formatted, numbers, lists of rows); the
markup, and the escaping of every value, is the template's job. A builder returns `None` when
its section has nothing to show on this run and should be left off the page.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from labelloop.report import plots
from labelloop.report.data import Gate, ReportData, integer, matrix, number, row_normalize
from labelloop.report.format import Figure, fmt, kpis, pct, plot, plural
from labelloop.report.guidance import csv_data_uri, metric_help, provider_summary
from labelloop.report.quality_facts import people_and_models
from labelloop.report.thumbnails import preview

# Caps that keep the page light whatever the run's size; the page says what it left out.
MAX_REVIEW_ITEMS = 60
REVIEW_ITEMS_OPEN = 12
MAX_ANNOTATOR_MATRICES = 16
MAX_CLASSES_PLOTTED = 30
ANNOTATOR_ROWS_OPEN = 20

Context = dict[str, Any]

# How a cold-start batch was chosen, by the strategy the selection summary names.
COLD_START_HOW = {
    "k_center": "spread over the items by k-center diversity sampling (no two picks alike)",
    "cluster_margin": "spread over the items by k-center diversity sampling (no two picks alike)",
    "random": "a seeded random sample",
}


# Gates ----------------------------------------------------------------------------------------


def _meter(gate: Gate, *, low: float, high: float) -> Context:
    """Where the fill, the confidence interval and the threshold mark sit, in % of the width."""
    span = (high - low) or 1.0

    def pos(v: float) -> float:
        return float(np.clip((v - low) / span * 100.0, 0.0, 100.0))

    value = gate.value if gate.value is not None else low
    ci = None
    if gate.ci is not None:
        left, right = pos(gate.ci[0]), pos(gate.ci[1])
        ci = {"left": f"{left:.1f}", "width": f"{max(right - left, 0.5):.1f}"}
    return {
        # Green only for a gate that was decided and passed; amber for one never reached.
        "state": "pending" if not gate.evaluated else "open" if gate.passed else "closed",
        "fill": f"{pos(value):.1f}",
        "ci": ci,
        "mark": f"{pos(gate.threshold):.1f}",
        "threshold": fmt(gate.threshold, ",.0f" if gate.metric == "label_count" else ".2f"),
    }


def _gate_card(gate: Gate) -> Context:
    if gate.metric == "label_count":
        value = fmt(integer(gate.value))
        detail = f"labels of {fmt(int(gate.threshold))} needed"
        sub = "Consolidated labels that pass the minimum confidence."
        meter = _meter(gate, low=0.0, high=max(gate.threshold * 1.25, gate.value or 0.0, 1.0))
    else:
        value = fmt(gate.value) if gate.value is not None else "null"
        detail = f"{gate.metric}, min {fmt(gate.threshold)}"
        sub = ""
        if gate.ci is not None:
            sub = f"95% bootstrap CI [{fmt(gate.ci[0])}, {fmt(gate.ci[1])}]."
            if gate.ci_straddles:
                sub += " The threshold lies inside the interval: a close call."
        if gate.reason and gate.evaluated:
            sub += f" Decided by rule {gate.rule}: {gate.reason}."
        elif gate.value is None:
            sub += " Agreement could not be measured."
        if not gate.evaluated:
            sub += " Not reached: the count gate closed first."
        lows = [0.0, gate.threshold] + ([gate.ci[0]] if gate.ci else [])
        lows += [gate.value] if gate.value is not None else []
        meter = _meter(gate, low=min(*lows, 0.0), high=1.0)
    return {
        "name": gate.name,
        "status": gate.status,
        "pill": {"open": "open", "closed": "closed"}.get(gate.status, "skip"),
        "value": value,
        "detail": detail,
        "sub": sub.strip(),
        "help": "" if gate.metric == "label_count" else metric_help(gate.metric),
        "metric_name": gate.metric,
        "meter": meter,
    }


def gates(data: ReportData) -> Context:
    """Both gates with value, threshold and CI, then the round's counts."""
    count, agreement = data.gates()
    q = data.quality
    facts = kpis(
        [
            ("items labeled", fmt(integer(q.get("labeled_items")))),
            ("annotations", fmt(data.annotations)),
            ("annotators", fmt(data.annotator_count)),
            ("all agree", pct(q.get("all_agree_rate"))),
            ("ties", fmt(integer(q.get("ties")))),
            ("sent to review", fmt(integer(q.get("review_items")))),
            ("bad records", fmt(integer(q.get("bad_records")))),
            ("consolidation", str(q.get("consolidation_method") or "n/a")),
            ("min confidence", fmt(q.get("min_confidence"), ".2f")),
            *people_and_models(data),
        ]
    )
    return {
        "lead": "Training runs only when there are enough consolidated labels and the"
        " annotators agree.",
        "cards": [_gate_card(count), _gate_card(agreement)],
        "facts": facts,
    }


# Agreement ------------------------------------------------------------------------------------


def _per_class_figure(per_class: dict[str, Any]) -> Figure:
    names = [str(k) for k in per_class]
    values = np.array([number(v) if number(v) is not None else np.nan for v in per_class.values()])
    caption = ""
    if len(names) > MAX_CLASSES_PLOTTED:
        # The weakest classes are the ones worth a look (NaN sorts last).
        keep = np.sort(np.argsort(values, kind="stable")[:MAX_CLASSES_PLOTTED])
        caption = f"The {MAX_CLASSES_PLOTTED} classes with the lowest agreement of {len(names)}."
        names, values = [names[i] for i in keep], values[keep]
    return plot(
        lambda: plots.bar_png(
            names,
            values,
            title="Agreement per class",
            xlabel="per-class agreement",
            limits=(min(0.0, float(np.nanmin(values, initial=0.0))), 1.0),
        ),
        "Agreement per class",
        caption,
    )


def _pairwise(data: ReportData) -> tuple[list[Figure], list[str]]:
    pairwise = data.quality.get("pairwise")
    if not (isinstance(pairwise, dict) and isinstance(pairwise.get("annotators"), list)):
        if data.single_annotator:
            return [], []
        return [], ["Pairwise agreement is not in the quality artifact."]
    ids = [str(a) for a in pairwise["annotators"]]
    if len(ids) < 2:
        return [], ["Pairwise agreement needs at least two annotators."]
    figures = []
    for key, title, vmin, cmap in (
        ("agreement", "Pairwise agreement (share of shared items)", 0.0, "Blues"),
        ("cohen_kappa", "Pairwise Cohen's kappa", -0.2, "PuBu"),
    ):
        values = matrix(pairwise.get(key))
        if values is None or values.shape != (len(ids), len(ids)):
            continue
        figures.append(
            plot(
                functools.partial(
                    plots.heatmap_png,
                    values,
                    row_labels=ids,
                    col_labels=ids,
                    title=title,
                    vmin=vmin,
                    vmax=1.0,
                    cmap=cmap,
                ),
                title,
                "Grey cells: no items in common (or the annotator with itself).",
            )
        )
    return figures, []


def agreement(data: ReportData) -> Context:
    """Overall metrics, per-class bars and pairwise heatmaps."""
    q = data.quality
    warn: list[str] = []
    if data.no_labels:
        warn.append("No annotations this round: there is no agreement to measure.")
    if data.single_annotator:
        warn.append("Only one annotator: inter-annotator agreement needs at least two.")
    if data.single_class:
        warn.append(
            "Only one class: chance-corrected agreement (alpha, kappa) is undefined when every"
            " answer is the same class."
        )
    metrics = q.get("metrics")
    rows: list[Context] = []
    if isinstance(metrics, dict) and metrics:
        rows = [
            {
                "name": str(k),
                "gate": k == data.agreement_metric,
                "value": fmt(v),
                "help": metric_help(str(k)),
            }
            for k, v in metrics.items()
        ]
    else:
        rows.append(
            {
                "name": data.agreement_metric,
                "gate": True,
                "value": fmt(data.agreement),
                "help": metric_help(data.agreement_metric),
            }
        )
        if "all_agree_rate" in q:
            rows.append(
                {
                    "name": "all_agree_rate",
                    "gate": False,
                    "value": fmt(q.get("all_agree_rate")),
                    "help": metric_help("all_agree_rate"),
                }
            )
    if data.agreement_ci is not None:
        lo, hi = data.agreement_ci
        rows.append(
            {
                "name": f"{data.agreement_metric} 95% CI",
                "gate": False,
                "value": f"[{fmt(lo)}, {fmt(hi)}]",
                "help": "the range the gate's metric likely lies in (bootstrap over items)",
            }
        )
    per_class = q.get("per_class_agreement")
    per_class_figure = None
    per_class_note = ""
    if isinstance(per_class, dict) and per_class:
        per_class_figure = _per_class_figure(per_class)
    elif not data.no_labels:
        per_class_note = "Per-class agreement is not in the quality artifact."
    pair_figures, pair_notes = _pairwise(data)
    return {
        "lead": "How consistently annotators gave the same answer, overall, per class and per"
        " pair.",
        "warnings": warn,
        "rows": rows,
        "per_class": per_class_figure,
        "per_class_note": per_class_note,
        "pairwise": pair_figures,
        "pairwise_notes": pair_notes,
    }


# Annotators -----------------------------------------------------------------------------------


def _annotator_row(r: dict[str, Any], work: dict[str, Any]) -> Context:
    acc = number(r.get("accuracy"))
    gold = number(r.get("gold_accuracy"))
    mine = work.get(str(r.get("annotator", "")))
    stats = mine if isinstance(mine, dict) else {}
    answers = number(stats.get("answers")) or 0.0
    seconds = number(stats.get("seconds")) or 0.0
    return {
        "per_answer": f"{seconds / answers:.1f} s" if answers and seconds else "n/a",
        "per_hour": f"{3600.0 * answers / seconds:,.0f}" if answers and seconds else "n/a",
        "skipped": fmt(integer(stats.get("skipped"))) if stats else "n/a",
        "name": str(r.get("annotator", "?")),
        "annotations": fmt(integer(r.get("annotations"))),
        "accuracy": fmt(acc),
        "bar": None if acc is None else f"{max(acc, 0.0) * 80:.0f}",
        "gold": fmt(gold) if gold is not None else "n/a",
        "gold_items": (integer(r.get("gold_items")) or 0) if gold is not None else None,
        "flagged": bool(r.get("flagged")),
        "flag_reason": str(r.get("flag_reason", "") or ""),
    }


def _confusion_grid(rows: Sequence[dict[str, Any]], labels: list[str]) -> Figure | None:
    with_cm: list[tuple[dict[str, Any], np.ndarray]] = []
    for r in rows:
        m = matrix(r.get("confusion"))
        if m is not None and labels and m.shape == (len(labels), len(labels)):
            with_cm.append((r, m))
    if not with_cm:
        return None
    # Flagged first, then the least accurate: the ones worth a look.
    with_cm.sort(key=lambda rm: (not rm[0].get("flagged"), number(rm[0].get("accuracy")) or 0.0))
    shown = with_cm[:MAX_ANNOTATOR_MATRICES]
    more = len(with_cm) - len(shown)
    caption = "Rows: true class (estimated); columns: the annotator's answer; each row sums to 1."
    if more:
        caption += f" {more} more annotator(s) not drawn."
    return plot(
        lambda: plots.confusion_grid_png(
            [row_normalize(m) for _, m in shown],
            titles=[
                f"{r.get('annotator', '?')} ({fmt(r.get('accuracy'), '.2f')})" for r, _ in shown
            ],
            labels=labels,
            highlight=[bool(r.get("flagged")) for r, _ in shown],
        ),
        "Confusion matrix per annotator",
        caption,
    )


def annotators(data: ReportData) -> Context:
    """The per-annotator table and confusion matrices."""
    entries = data.quality.get("annotator_table")
    if not isinstance(entries, list) or not entries:
        msg = (
            "No annotators this round."
            if data.no_labels
            else "The per-annotator table is not in the quality artifact."
        )
        return {"lead": "Who labeled well.", "empty": msg}
    rows = [e for e in entries if isinstance(e, dict)]
    work = provider_summary(data.job).get("annotators")
    work = work if isinstance(work, dict) else {}
    table = [_annotator_row(r, work) for r in rows]
    flagged = sum(1 for r in table if r["flagged"])
    has_gold = any(r["gold_items"] is not None for r in table)
    lead = (
        f"{plural(len(rows), 'annotator')}, {flagged or 'none'} flagged. Estimated accuracy"
        " comes from the consolidation model"
        + ("; the gold score from items with a known answer." if has_gold else ".")
    )
    if work:
        lead += " Time is what the labeling tool measured per answer (Label Studio's lead time)."
    head = ["annotator", "annotations", "estimated accuracy", "gold score", "gold items"]
    head += ["seconds per answer", "answers per hour", "skipped", "flagged", "flag reason"]
    csv_rows = [
        [
            r["name"],
            r["annotations"],
            r["accuracy"],
            r["gold"],
            r["gold_items"],
            r["per_answer"],
            r["per_hour"],
            r["skipped"],
            "yes" if r["flagged"] else "no",
            r["flag_reason"],
        ]
        for r in table
    ]
    return {
        "lead": lead,
        "empty": "",
        "rows": table[:ANNOTATOR_ROWS_OPEN],
        "folded": table[ANNOTATOR_ROWS_OPEN:],
        "gold": has_gold,
        "work": bool(work),
        "csv": csv_data_uri(head, csv_rows),
        "confusion": _confusion_grid(rows, data.labels),
    }


# Disagreements --------------------------------------------------------------------------------


def _answer_text(answer: dict[str, Any]) -> str:
    if "label" in answer:
        return str(answer["label"])
    if isinstance(answer.get("labels"), list):
        return ", ".join(str(v) for v in answer["labels"]) or "(none)"
    for key in ("boxes", "spans"):
        if isinstance(answer.get(key), list):
            return f"{len(answer[key])} {key}"
    return "?"


def _review_card(row: dict[str, Any], data: ReportData) -> Context:
    item_id = str(row["item"])
    p = preview(item_id, data.items)
    raw_answers = row.get("annotations")
    answers: list[Any] = raw_answers if isinstance(raw_answers, list) else []
    chips = [
        {"who": str(a.get("annotator", "?")), "answer": _answer_text(a)}
        for a in answers
        if isinstance(a, dict)
    ]
    votes: list[Context] = []
    if not chips:
        # No per-annotator answers: fall back to the vote counts.
        raw_votes = row.get("votes")
        counts: dict[str, Any] = raw_votes if isinstance(raw_votes, dict) else {}
        votes = [
            {"label": str(k), "count": str(v)}
            for k, v in sorted(counts.items(), key=lambda kv: -(number(kv[1]) or 0))
        ]
    confidence = number(row.get("confidence"))
    label = row.get("label")
    error = number(row.get("expected_error"))
    return {
        "label": "" if label is None else f"label {_answer_text({'label': label})}",
        "error": f" · expected error {fmt(error, '.2f')}" if error is not None else "",
        "item": item_id,
        "name": item_id.rstrip("/").rsplit("/", 1)[-1],
        "image": p.data_uri,
        "pixelated": p.pixelated,
        "snippet": p.snippet,
        "no_preview": p.note or "no preview",
        "reason": str(row.get("reason", "review")),
        "confidence": f" · confidence {fmt(confidence, '.2f')}" if confidence is not None else "",
        "chips": chips,
        "votes": votes,
    }


def disagreements(data: ReportData) -> Context:
    """The review items: preview, reason and every answer."""
    if not data.review:
        msg = "No items were sent to review."
        if data.no_labels:
            msg = "No items were labeled, so none were sent to review."
        return {"lead": "Items a person should look at.", "empty": msg}
    shown = data.review[:MAX_REVIEW_ITEMS]
    cards = [_review_card(row, data) for row in shown]
    reasons: dict[str, int] = {}
    for row in data.review:
        key = str(row.get("reason", "review"))
        reasons[key] = reasons.get(key, 0) + 1
    summary = ", ".join(f"{k}: {n}" for k, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    more = len(data.review) - len(shown)
    csv_rows = []
    for row in data.review:
        raw = row.get("annotations")
        answers = raw if isinstance(raw, list) else []
        said = "; ".join(
            f"{a.get('annotator', '?')}: {_answer_text(a)}" for a in answers if isinstance(a, dict)
        )
        confidence = number(row.get("confidence"))
        csv_rows.append([str(row["item"]), str(row.get("reason", "review")), confidence, said])
    return {
        "lead": f"{plural(len(data.review), 'item')} sent to review ({summary}),"
        " each with every annotator's answer.",
        "csv": csv_data_uri(["item", "reason", "confidence", "answers"], csv_rows),
        "empty": "",
        "cards": cards[:REVIEW_ITEMS_OPEN],
        "folded": cards[REVIEW_ITEMS_OPEN:],
        "more_note": f"{more} more item(s) are in the review artifact." if more else "",
    }
