"""The run report's Markdown summary: the same story as the HTML page, in tables, no images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labelloop.report import guidance
from labelloop.report.budget import budget
from labelloop.report.data import ReportData, integer, matrix, number, per_class_scores
from labelloop.report.format import fmt, pct
from labelloop.report.page import input_notes

MAX_REVIEW_ROWS = 20


def _cell(value: Any) -> str:
    """A Markdown table cell: pipes escaped, newlines flattened."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_markdown(data: ReportData) -> str:
    """The Markdown summary of the run."""
    q = data.quality
    out = [f"# labelloop run report\n\nRun `{data.run_id}`.\n\n"]
    if data.trained:
        acc = number(data.outcome.get("accuracy"))
        held = number(data.outcome.get("eval_accuracy"))
        honest = f"; accuracy on the fixed evaluation set {fmt(held)}" if held is not None else ""
        out.append(
            f"**Model trained**: {data.reason}{honest}; held-out accuracy on noisy labels of"
            f" the selected items {fmt(acc)}.\n"
        )
    else:
        out.append(f"**No model this round**: gate closed, {data.reason or 'unknown reason'}.\n")
    out += [f"\n> {n}\n" for n in input_notes(data)]

    steps = guidance.next_steps(data)
    out.append(f"\n## What to do next\n\n{steps['lead']}\n\n")
    out += [f"{i}. **{s['title']}.** {s['detail']}\n" for i, s in enumerate(steps["steps"], 1)]
    job = guidance.labeling(data)
    if job is not None:
        out.append("\n## Labeling job\n\n" + job["lead"] + "\n\n")
        if job["title"] or job["url"]:
            out.append(f"{job['title']} {job['url']}".strip() + "\n\n")
        if job["has_job"]:
            facts = job["facts"] + job["gemini"]
            out.append(_table([k.label for k in facts], [[k.value for k in facts]]))
        if job["ledger_line"]:
            out.append(f"\n{job['ledger_line']}\n")
        if job["open_jobs"]:
            out.append("\nOpen jobs in the ledger:\n\n")
            out.append(_table(job["open_jobs_head"], job["open_jobs"]))
        if job["state_command"]:
            out.append(f"\nEvery item's state and open job: `{job['state_command']}`\n")

    money = budget(data)
    if money is not None:
        out.append("\n## Budget\n\n" + money["lead"] + "\n\n")
        out.append(_table([k.label for k in money["facts"]], [[k.value for k in money["facts"]]]))
        out += [f"\n- {n}" for n in money["notes"]]
        out.append("\n")
        if money["trend"]:
            out.append("\n" + _table(money["trend_head"], money["trend"]))

    count, agreement = data.gates()
    if agreement.reason:
        out.append(f"\nGate decided by rule `{agreement.rule}`: {agreement.reason}.\n")
    ci = f"[{fmt(agreement.ci[0])}, {fmt(agreement.ci[1])}]" if agreement.ci else "n/a"
    out.append("\n## Gates\n\n")
    out.append(
        _table(
            ["gate", "value", "minimum", "95% CI", "status"],
            [
                [
                    count.name,
                    fmt(integer(count.value)),
                    fmt(int(count.threshold)),
                    "",
                    count.status,
                ],
                [
                    f"{agreement.name} ({agreement.metric})",
                    fmt(agreement.value),
                    fmt(agreement.threshold),
                    ci,
                    agreement.status,
                ],
            ],
        )
    )
    out.append(
        "\n"
        + _table(
            [
                "items labeled",
                "annotations",
                "annotators",
                "all agree",
                "ties",
                "review",
                "bad records",
            ],
            [
                [
                    fmt(integer(q.get("labeled_items"))),
                    fmt(data.annotations),
                    fmt(data.annotator_count),
                    pct(q.get("all_agree_rate")),
                    fmt(integer(q.get("ties"))),
                    fmt(integer(q.get("review_items"))),
                    fmt(integer(q.get("bad_records"))),
                ]
            ],
        )
    )

    out.append("\n## Agreement\n\n")
    metrics = q.get("metrics")
    if isinstance(metrics, dict) and metrics:
        out.append(_table(["metric", "value"], [[k, fmt(v)] for k, v in metrics.items()]))
    else:
        out.append(_table(["metric", "value"], [[data.agreement_metric, fmt(data.agreement)]]))
    per_class = q.get("per_class_agreement")
    if isinstance(per_class, dict) and per_class:
        out.append(
            "\n" + _table(["class", "agreement"], [[k, fmt(v)] for k, v in per_class.items()])
        )

    entries = q.get("annotator_table")
    out.append("\n## Annotators\n\n")
    if isinstance(entries, list) and entries:
        rows = [
            [
                e.get("annotator", "?"),
                fmt(integer(e.get("annotations"))),
                fmt(e.get("accuracy")),
                fmt(e.get("gold_accuracy")),
                ("flagged: " + str(e.get("flag_reason", ""))) if e.get("flagged") else "",
            ]
            for e in entries
            if isinstance(e, dict)
        ]
        out.append(_table(["annotator", "annotations", "est. accuracy", "gold", "flag"], rows))
    else:
        out.append("No per-annotator table.\n")

    out.append(f"\n## Disagreements\n\n{len(data.review)} item(s) sent to review.\n")
    if data.review:
        rows = []
        for r in data.review[:MAX_REVIEW_ROWS]:
            raw = r.get("annotations")
            answers: list[Any] = raw if isinstance(raw, list) else []
            said = ", ".join(
                f"{a.get('annotator', '?')}: {a.get('label', a.get('labels', '?'))}"
                for a in answers
                if isinstance(a, dict)
            )
            rows.append([f"`{r['item']}`", r.get("reason", ""), said or r.get("votes", "")])
        out.append("\n" + _table(["item", "reason", "answers"], rows))
        if len(data.review) > MAX_REVIEW_ROWS:
            out.append(f"\n…and {len(data.review) - MAX_REVIEW_ROWS} more.\n")

    s = data.selection
    out.append("\n## Active learning\n\n")
    if s:
        out.append(
            _table(
                ["strategy", "cold start", "pool", "selected"],
                [
                    [
                        s.get("strategy", ""),
                        fmt(bool(s.get("cold_start"))),
                        fmt(integer(s.get("pool"))),
                        fmt(integer(s.get("selected"))),
                    ]
                ],
            )
        )
        mix = s.get("predicted_class_mix")
        if isinstance(mix, dict) and mix:
            out.append(
                "\nPredicted class mix: " + ", ".join(f"{k}: {v}" for k, v in mix.items()) + "\n"
            )
    else:
        out.append("No selection summary.\n")

    out.append("\n## Model\n\n")
    o = data.outcome
    cm = matrix(o.get("confusion_matrix"))
    raw_labels = o.get("labels")
    labels: list[Any] = raw_labels if isinstance(raw_labels, list) else []
    if data.trained:
        out.append(
            f"Held-out accuracy {fmt(o.get('accuracy'))}"
            f" on {fmt(integer(o.get('test_items')))} items"
            f" (trained on {fmt(integer(o.get('train_items')))}).\n"
        )
        if cm is not None and len(labels) == cm.shape[0] == cm.shape[1]:
            sc = per_class_scores(cm)
            rows = [
                [name, fmt(p, ".2f"), fmt(r, ".2f"), fmt(f, ".2f"), fmt(integer(n))]
                for name, p, r, f, n in zip(
                    labels, sc["precision"], sc["recall"], sc["f1"], sc["support"], strict=True
                )
            ]
            out.append("\n" + _table(["class", "precision", "recall", "F1", "support"], rows))
    else:
        out.append(f"No model this round: {data.reason or 'training did not run'}.\n")

    out.append("\n## Across rounds\n\n")
    rows = [
        [
            i,
            str(r.get("run_id", "")),
            fmt(integer(r.get("label_count"))),
            fmt(r.get("agreement")),
            fmt(r.get("accuracy")) if r.get("trained") else "–",
            r.get("reason", ""),
        ]
        for i, r in enumerate(data.rounds, start=1)
    ]
    out.append(_table(["round", "run", "labels", "agreement", "accuracy", "outcome"], rows))
    return "".join(out)
