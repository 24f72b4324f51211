"""The report's people-facing sections: the labeling job, and what to do next.

"What to do next" reads the gate decision the pipeline recorded (the training outcome: trained,
or which gate closed, with its value and threshold) and never evaluates the rule again; the
job record (provider, key, progress, the provider's own summary) says whether labeling is
still open.
"""

from __future__ import annotations

import base64
import csv
import io
import math
from collections.abc import Sequence
from typing import Any

from labelloop.report.data import ReportData, integer, number
from labelloop.report.format import fmt, kpis, plural

Context = dict[str, Any]

# What each agreement metric measures, in a sentence (the report shows these next to the names).
METRIC_HELP: dict[str, str] = {
    "krippendorff_alpha": "agreement beyond chance, any number of annotators per item"
    " (1 = perfect, 0 = chance level, below 0 = systematic disagreement)",
    "fleiss_kappa": "agreement beyond chance for a fixed number of annotators per item"
    " (1 = perfect, 0 = chance level)",
    "cohen_kappa": "agreement beyond chance between two annotators (1 = perfect, 0 = chance)",
    "mean_cohen_kappa": "Cohen's kappa averaged over every pair of annotators",
    "percent_agreement": "share of annotator pairs on an item that gave the same answer",
    "all_agree_rate": "share of items on which every annotator gave the same answer",
    "mean_pairwise_jaccard": "overlap of the label sets two annotators chose (multi-label)",
    "box_f1_iou50": "boxes two annotators drew that match (IoU at least 0.5), as an F1 score",
    "span_f1_exact": "entity spans two annotators marked identically, as an F1 score",
    "span_f1_overlap": "entity spans two annotators marked overlapping, as an F1 score",
}


def metric_help(name: str) -> str:
    """One sentence on what an agreement metric measures ("" when unknown)."""
    return METRIC_HELP.get(name, "")


def csv_data_uri(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A CSV file as a `data:` URI (a download link that needs no server and no script)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(head)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    encoded = base64.b64encode(buffer.getvalue().encode("utf-8")).decode("ascii")
    return f"data:text/csv;charset=utf-8;base64,{encoded}"


# The labeling job -----------------------------------------------------------------------------


def _obj(value: Any) -> dict[str, Any]:
    """A JSON object, or `{}` for anything else (the record's keys may be missing or null)."""
    return value if isinstance(value, dict) else {}


def job_progress(job: dict[str, Any]) -> tuple[int | None, int | None]:
    """Items fully labeled and items in the job, from the job record."""
    progress = _obj(job.get("progress"))
    return integer(progress.get("labeled")), integer(progress.get("total") or job.get("items"))


def job_is_open(job: dict[str, Any]) -> bool:
    """Whether the provider was still labeling when the step collected (a later run goes on)."""
    return bool(job) and job.get("complete") is False


def provider_summary(job: dict[str, Any]) -> dict[str, Any]:
    """The provider's own summary in the job record (project, people's time, Gemini's cost)."""
    return _obj(job.get("provider_summary"))


def job_title_and_url(job: dict[str, Any]) -> tuple[str, str]:
    """The job's name as people see it at the provider, and its URL (either may be "")."""
    summary = provider_summary(job)
    human = _obj(summary.get("human"))
    title = str(summary.get("title") or human.get("title") or "")
    url = str(summary.get("url") or human.get("url") or "")
    return title, url


def _gemini_facts(summary: dict[str, Any]) -> list[tuple[str, str]]:
    calibration = _obj(summary.get("calibration"))
    gemini = _obj(summary.get("gemini")) or summary
    facts: list[tuple[str, str]] = []
    if calibration:
        facts.append(("auto-accept threshold", fmt(calibration.get("threshold"), ".3f")))
        precision = number(calibration.get("precision"))
        sample = integer(calibration.get("sample")) or 0
        facts.append(
            (
                f"precision on {plural(sample, 'calibration item')}",
                fmt(precision, ".1%") if precision is not None else "n/a",
            )
        )
    for key, label in (("auto_accepted", "labeled by Gemini"), ("to_people", "sent to people")):
        if key in summary:
            facts.append((label, fmt(integer(summary.get(key)))))
    if gemini.get("model"):
        facts.append(("model", str(gemini["model"])))
    if "cost_usd" in gemini:
        cost = number(gemini.get("cost_usd"))
        facts.append(("estimated cost", f"${cost:,.4f}" if cost is not None else "n/a"))
    return facts


def state_command(data: ReportData) -> str:
    """The command that shows this loop's ledger ("" when the run keeps no state)."""
    return f"labelloop state {data.state_uri}" if data.state_uri else ""


def _age(hours: Any) -> str:
    h = number(hours)
    if h is None:
        return "n/a"
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h" if h < 48 else f"{h / 24:.1f} days"


def open_jobs(data: ReportData) -> list[dict[str, Any]]:
    """The ledger's open jobs (every round's, not only this one's), oldest first."""
    rows = data.ledger.get("open_jobs") if data.ledger else None
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def queued_items(data: ReportData) -> int:
    """Items waiting in open jobs, by the ledger."""
    return sum(integer(r.get("queued")) or 0 for r in open_jobs(data))


def _open_job_rows(data: ReportData) -> list[list[str]]:
    out = []
    for r in open_jobs(data):
        progress = _obj(r.get("progress"))
        labeled = integer(progress.get("labeled"))
        total = integer(progress.get("total")) or integer(r.get("items"))
        out.append(
            [
                str(r.get("provider", "")),
                str(r.get("key", "")),
                str(r.get("round", "")),
                _age(r.get("age_hours")),
                fmt(integer(r.get("queued"))),
                f"{fmt(labeled)} / {fmt(total)}",
                "unreachable at the last run" if integer(r.get("errors")) else "",
            ]
        )
    return out


def labeling(data: ReportData) -> Context | None:
    """The provider and its job: name, URL, progress, skipped answers, Gemini's calibration;
    then every open job in the ledger and the command that shows it."""
    job = data.job
    if not job and not data.state_uri:
        return None
    labeled, total = job_progress(job)
    title, url = job_title_and_url(job)
    share = (labeled or 0) / total if total else 0.0
    facts = kpis(
        [
            ("provider", str(job.get("provider", "n/a"))),
            ("items fully labeled", f"{fmt(labeled)} / {fmt(total)}"),
            ("labelers per item", fmt(integer(job.get("labelers_per_item")))),
            ("skipped answers", fmt(integer(job.get("skipped")))),
        ]
    )
    summary = provider_summary(job)
    routed = job.get("provider") in ("gemini", "gemini_then_human")
    gemini = _gemini_facts(summary) if routed else []
    status = "open: people are still labeling" if job_is_open(job) else "complete"
    lead = (
        f"The {job.get('provider', '')} job for this round is {status}."
        if job
        else "This round has no labeling job record (the labeling step did not run)."
    )
    counts = _obj(data.ledger.get("items")) if data.ledger else {}
    ledger_line = ""
    if counts:
        ledger_line = (
            f"Items in the ledger: {fmt(integer(counts.get('pool')))} in the pool,"
            f" {fmt(integer(counts.get('queued')))} queued in open jobs,"
            f" {fmt(integer(counts.get('labeled')))} labeled."
        )
    return {
        "lead": lead,
        "has_job": bool(job),
        "title": title,
        "url": url,
        "key": str(job.get("key", "")),
        "open": job_is_open(job),
        "fill": f"{min(share, 1.0) * 100:.1f}",
        "facts": facts,
        "gemini": kpis(gemini),
        "ledger_line": ledger_line,
        "open_jobs_head": ["provider", "job key", "round", "age", "queued", "labeled", "note"],
        "open_jobs": _open_job_rows(data),
        "state_command": state_command(data),
    }


# What to do next ------------------------------------------------------------------------------


def _step(title: str, detail: str, setting: str = "") -> Context:
    return {"title": title, "detail": detail, "setting": setting}


def _flagged(data: ReportData) -> list[dict[str, Any]]:
    table = data.quality.get("annotator_table")
    rows = table if isinstance(table, list) else []
    return [r for r in rows if isinstance(r, dict) and r.get("flagged")]


def _weakest_classes(data: ReportData, n: int = 2) -> list[tuple[str, float]]:
    per_class = data.quality.get("per_class_agreement")
    if not isinstance(per_class, dict):
        return []
    scored = [(str(k), x) for k, v in per_class.items() if (x := number(v)) is not None]
    return sorted(scored, key=lambda kv: kv[1])[:n] if len(scored) > 1 else []


def _wait_step(data: ReportData) -> Context:
    jobs = open_jobs(data)
    command = state_command(data)
    see = f" `{command}` lists them with their age and progress." if command else ""
    if not job_is_open(data.job):
        return _step(
            "Let people finish the open jobs",
            f"{plural(queued_items(data), 'item')} still wait in"
            f" {plural(len(jobs), 'open job')} from earlier rounds. The next run collects"
            f" whatever people labeled by then, and tops the queue up only to `queue_size`.{see}",
            "pipeline.queue_size",
        )
    labeled, total = job_progress(data.job)
    title, url = job_title_and_url(data.job)
    where = f" in “{title}”" if title else ""
    where += f" ({url})" if url else ""
    others = len(jobs) - 1
    more = (
        f" {plural(others, 'other open job')} also wait{'s' if others == 1 else ''}."
        if others > 0
        else ""
    )
    return _step(
        "Wait for the open labeling job",
        f"{fmt(labeled)} of {fmt(total)} items are fully labeled{where}.{more} Run the pipeline"
        " again when your annotators are done: it finds the same job (no new project, no"
        f" duplicate tasks) and collects every label given so far.{see}",
    )


def _count_steps(data: ReportData) -> list[Context]:
    o = data.outcome
    have = integer(o.get("value"))
    need = integer(o.get("threshold"))
    have = data.label_count if have is None else have
    need = data.min_labeled_count if need is None else need
    missing = max(need - have, 0)
    steps = []
    selected = integer(data.selection.get("selected")) if data.selection else None
    if not job_is_open(data.job):
        detail = f"{plural(missing, 'more consolidated label')} needed ({have:,} of {need:,})."
        if selected and have:
            rate = have / selected
            more = math.ceil(missing / rate)
            detail += (
                f" This round {selected:,} items gave {have:,} labels ({rate:.0%}); at that rate"
                f" about {more:,} more items are needed: raise `selection_size` or run another"
                " round (labels add up across rounds)."
            )
        steps.append(_step("Label more items", detail, "pipeline.selection_size"))
    labeled = integer(data.quality.get("labeled_items")) or 0
    unsure = labeled - have
    if unsure > 0:
        min_conf = fmt(data.quality.get("min_confidence"), ".2f")
        steps.append(
            _step(
                "Add a labeler per item, or gold questions",
                f"{plural(unsure, 'labeled item')} did not reach the minimum confidence"
                f" ({min_conf}) after consolidation. One more labeler per item"
                " (`labelers_per_item`) or a few known answers (`gold_uri`) make consolidation"
                " surer, so more of them count.",
                "pipeline.labelers_per_item",
            )
        )
    if have > 0:
        steps.append(
            _step(
                "Or lower the count threshold",
                f"`min_labeled_count: {have}` would train now on the {have:,} labels you have."
                f" What it costs: a model trained on {have / max(need, 1):.0%} of the labels you"
                " asked for, so expect lower accuracy than a full batch would give.",
                "pipeline.min_labeled_count",
            )
        )
    return steps


def _agreement_steps(data: ReportData) -> list[Context]:
    o = data.outcome
    metric = str(o.get("metric") or data.agreement_metric)
    value = number(o.get("value"))
    value = data.agreement if value is None else value
    threshold = number(o.get("threshold"))
    threshold = data.min_agreement if threshold is None else threshold
    steps = []
    flagged = _flagged(data)
    if flagged:
        names = ", ".join(str(r.get("annotator", "?")) for r in flagged)
        without = number(data.quality.get("agreement_without_flagged"))
        effect = f" Without them, {metric} would be {without:.3f}." if without is not None else ""
        steps.append(
            _step(
                f"Drop or retrain the flagged {'annotator' if len(flagged) == 1 else 'annotators'}",
                f"{names}: {'; '.join(str(r.get('flag_reason', 'flagged')) for r in flagged)}."
                f"{effect} Remove them from the project (or give them feedback) and run again.",
            )
        )
    steps.append(
        _step(
            "Add gold questions",
            "A CSV of items with known answers (`gold_uri`) scores every annotator against the"
            " truth and anchors consolidation, so one careless annotator cannot sink a round.",
            "pipeline.gold_uri",
        )
    )
    weak = _weakest_classes(data)
    if weak:
        classes = " and ".join(f"“{name}” ({score:.2f})" for name, score in weak)
        steps.append(
            _step(
                "Clarify the instructions for the weakest classes",
                f"{classes} have the lowest agreement: annotators may read the label"
                " definitions differently. Add examples to the instructions (`instructions`"
                " provider option) for those classes.",
            )
        )
    if value is not None and value > 0:
        all_agree = number(data.quality.get("all_agree_rate"))
        cost = (
            f"only {all_agree:.0%} of items had every annotator agree,"
            if all_agree is not None
            else "annotators disagree often,"
        )
        steps.append(
            _step(
                "Or lower the agreement threshold",
                f"`min_agreement: {math.floor(value * 100) / 100:.2f}` (now {threshold:.2f})"
                f" would train on these labels. What it costs: {cost} so the model also learns"
                " the annotators' mistakes; check the confusion matrices above first.",
                "pipeline.min_agreement",
            )
        )
    return steps


def _trained_steps(data: ReportData) -> list[Context]:
    steps = [
        _step(
            "Run the next round",
            "The next round selects the items this model is least sure of, so each label"
            " teaches it the most.",
        )
    ]
    if data.review:
        steps.append(
            _step(
                "Look at the review queue",
                f"{plural(len(data.review), 'item')} went to review (ties or low confidence):"
                " see Disagreements below, or download the queue as CSV.",
            )
        )
    flagged = _flagged(data)
    if flagged:
        names = ", ".join(str(r.get("annotator", "?")) for r in flagged)
        steps.append(
            _step(
                "Check the flagged annotators",
                f"{names}: consolidation already gives their answers less weight, but their"
                " time is better spent elsewhere.",
            )
        )
    trained = [r for r in data.rounds if r.get("trained") and number(r.get("accuracy")) is not None]
    if len(trained) >= 2:
        gain = (number(trained[-1].get("accuracy")) or 0.0) - (
            number(trained[-2].get("accuracy")) or 0.0
        )
        if gain < 0.01:
            steps.append(
                _step(
                    "Decide whether more labels still pay off",
                    f"Held-out accuracy moved {gain:+.3f} since the last trained round. If it"
                    " stays flat, look at the classes the model confuses rather than labeling"
                    " more of the same.",
                )
            )
    return steps


def next_steps(data: ReportData) -> Context:
    """What to do next, from the recorded gate decision and the job's state."""
    gate = str(data.outcome.get("gate") or "")
    steps: list[Context] = []
    if job_is_open(data.job) or open_jobs(data):
        steps.append(_wait_step(data))
    if data.trained:
        steps += _trained_steps(data)
        lead = "A model was trained this round."
    elif gate == "label_count":
        steps += _count_steps(data)
        lead = "The count gate closed: not enough consolidated labels to train."
    elif gate == "agreement":
        steps += _agreement_steps(data)
        lead = "The agreement gate closed: the annotators disagree too much to train."
    else:
        lead = "No model was trained this round."
    return {"lead": lead, "steps": steps}
