"""Stage 5 component: agreement, consolidation and the label count the gates read."""

from typing import NamedTuple

from kfp import dsl

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def quality_gate(
    annotations: dsl.Input[dsl.Dataset],
    task_type: str,
    labels: str,
    consolidation_method: str,
    agreement_metric: str,
    min_confidence: float,
    state_uri: str,
    gold_uri: str,
    consolidated: dsl.Output[dsl.Dataset],
    review: dsl.Output[dsl.Dataset],
    quality: dsl.Output[dsl.Artifact],
    metrics: dsl.Output[dsl.Metrics],
    rejects: dsl.Output[dsl.Dataset],
) -> NamedTuple("GateOutputs", [("label_count", int), ("agreement", float), ("bad_records", int)]):
    """Validate annotations, measure agreement, consolidate labels, count trainable items.

    Args:
        annotations: Long-format annotations (JSONL).
        task_type: A labelloop task type.
        labels: The label set, comma-separated.
        consolidation_method: `mv` or `ds`.
        agreement_metric: The metric the agreement gate compares (default Krippendorff's alpha).
        min_confidence: Consolidated confidence an item needs to count as labeled.
        state_uri: The loop's state (consolidated labels are recorded for later rounds).
        gold_uri: Optional `item,label` table of known answers ("" for none): Dawid-Skene
            clamps those items and each annotator gets a gold score.

    Returns:
        consolidated: One row per item: label, confidence, votes (Dataset artifact, JSONL).
        review: Items for a person to look at: ties, low confidence (Dataset artifact, JSONL).
        quality: Every quality number and per-annotator table (JSON artifact).
        metrics: Headline numbers for the console (Metrics artifact).
        rejects: Annotation rows that failed validation (Dataset artifact, JSONL).
        label_count: Items whose consolidated label passes `min_confidence`.
        agreement: The configured agreement metric.
        bad_records: Count of rejected annotation rows.
    """
    from labelloop.failures import recorded
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
        )
    metrics.log_metric("label_count", result.label_count)
    metrics.log_metric(result.agreement_metric, result.agreement)
    metrics.log_metric("all_agree_rate", result.all_agree_rate)
    metrics.log_metric("review_items", result.review_items)
    metrics.log_metric("bad_records", result.bad_records)
    return (result.label_count, result.agreement, result.bad_records)
