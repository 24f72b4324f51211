"""Stage 5 component: agreement, consolidation, the label count and the gates' decision."""

from typing import NamedTuple

from kfp import dsl

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def quality_gate(
    annotations: dsl.Input[dsl.Dataset],
    job: dsl.Input[dsl.Artifact],
    task_type: str,
    labels: str,
    consolidation_method: str,
    agreement_metric: str,
    min_confidence: float,
    min_labeled_count: int,
    min_agreement: float,
    unmeasurable_agreement: str,
    min_model_precision: float,
    min_agreement_items: int,
    flagged_annotators: str,
    state_uri: str,
    gold_uri: str,
    consolidated: dsl.Output[dsl.Dataset],
    review: dsl.Output[dsl.Dataset],
    quality: dsl.Output[dsl.Artifact],
    metrics: dsl.Output[dsl.Metrics],
    rejects: dsl.Output[dsl.Dataset],
) -> NamedTuple(
    "GateOutputs",
    [
        ("decision", str),
        ("outcome", str),
        ("label_count", int),
        ("agreement", str),
        ("bad_records", int),
    ],
):
    """Validate annotations, measure agreement, consolidate labels, count them, decide.

    Args:
        annotations: Long-format annotations (JSONL).
        job: The labeling job record (a calibrated model's precision and confusion).
        task_type: A labelloop task type.
        labels: The label set, comma-separated.
        consolidation_method: `mv` or `ds`.
        agreement_metric: The metric the agreement gate compares (default Krippendorff's alpha).
        min_confidence: Consolidated confidence an item needs to count as labeled.
        min_labeled_count: The count gate's threshold.
        min_agreement: The agreement gate's threshold.
        unmeasurable_agreement: The policy when agreement cannot be measured: `close`,
            `train` or `model_precision`.
        min_model_precision: The `model_precision` policy's threshold.
        min_agreement_items: Items answered by two or more people that agreement needs.
        flagged_annotators: `exclude`, `downweight` or `keep` near-chance annotators.
        state_uri: The loop's state (consolidated labels are recorded for later rounds).
        gold_uri: Optional `item,label` table of known answers ("" for none): Dawid-Skene
            clamps those items and each annotator gets a gold score.

    Returns:
        consolidated: One row per item: label, confidence, votes (Dataset artifact, JSONL).
        review: Items for a person to look at, likeliest errors first: consolidated label,
            confidence, every answer and why (Dataset artifact, JSONL).
        quality: Every quality number, the annotator table and the gates' decision (JSON).
        metrics: Headline numbers for the console (Metrics artifact).
        rejects: Annotation rows that failed validation (Dataset artifact, JSONL).
        decision: `train` or `closed`: the gates' decision, which the DAG's `dsl.If` compares.
        outcome: The closed gate's outcome JSON (which gate, why), for the report.
        label_count: Items whose consolidated label passes `min_confidence`.
        agreement: The configured agreement metric, or `null (why)` when not measurable.
        bad_records: Count of rejected annotation rows.
    """
    from labelloop.failures import recorded
    from labelloop.gates import GatePolicy, format_agreement
    from labelloop.stages.quality_gate import quality_gate as step

    with recorded(consolidated.uri):
        result = step(
            annotations_uri=annotations.path,
            task_type=task_type,
            labels=labels,
            consolidation_method=consolidation_method,
            agreement_metric=agreement_metric,
            min_confidence=min_confidence,
            state_uri=state_uri,
            gold_uri=gold_uri,
            consolidated_uri=consolidated.path,
            review_uri=review.path,
            metrics_uri=quality.path,
            rejects_uri=rejects.path,
            job_uri=job.path,
            flagged_policy=flagged_annotators,
            policy=GatePolicy(
                min_labeled_count=min_labeled_count,
                min_agreement=min_agreement,
                unmeasurable=unmeasurable_agreement,
                min_model_precision=min_model_precision,
                min_agreement_items=min_agreement_items,
            ),
        )
    decision = result.decision
    if decision is None:  # the step always decides; this keeps the types honest
        raise RuntimeError("the quality step returned no gate decision")
    metrics.log_metric("label_count", result.label_count)
    if result.agreement is not None:  # an unmeasured agreement is not logged as a number
        metrics.log_metric(result.agreement_metric, result.agreement)
    if result.all_agree_rate is not None:
        metrics.log_metric("all_agree_rate", result.all_agree_rate)
    metrics.log_metric("review_items", result.review_items)
    metrics.log_metric("bad_records", result.bad_records)
    metrics.log_metric("gates_open", float(decision.train))
    return (
        decision.output,
        decision.outcome(),
        result.label_count,
        format_agreement(result.agreement, result.agreement_reason),
        result.bad_records,
    )
