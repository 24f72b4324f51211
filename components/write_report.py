"""Final component: the run report, on every branch of the gates."""

from kfp import dsl

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def write_report(
    quality: dsl.Input[dsl.Artifact],
    selection_summary: dsl.Input[dsl.Artifact],
    outcome: str,
    state_uri: str,
    run_id: str,
    min_labeled_count: int,
    min_agreement: float,
    report: dsl.Output[dsl.HTML],
    summary: dsl.Output[dsl.Markdown],
    metrics: dsl.Output[dsl.Metrics],
    classification_metrics: dsl.Output[dsl.ClassificationMetrics],
    review: dsl.Input[dsl.Dataset] = None,
    dataset: dsl.Input[dsl.Dataset] = None,
    annotations: dsl.Input[dsl.Dataset] = None,
    job: dsl.Input[dsl.Artifact] = None,
) -> str:
    """Write the run report and record the round's outcome in the state.

    Args:
        quality: The quality gate's JSON.
        selection_summary: The selection stage's summary JSON.
        outcome: The training outcome JSON from whichever gate branch ran.
        state_uri: The loop's state.
        run_id: The pipeline job id.
        min_labeled_count: The count gate's threshold.
        min_agreement: The agreement gate's threshold.
        review: Items sent to review (optional): shown with thumbnails and every answer.
        dataset: The round's items (optional): text snippets of inline text items.
        annotations: Long-format annotations (optional): each annotator's answer on review rows
            that do not carry them.
        job: The labeling job record (optional): provider, job name and URL, progress,
            per-annotator time, Gemini's threshold, precision and cost.

    Returns:
        report: One self-contained HTML page (HTML artifact; the console renders it).
        summary: The same in Markdown (Markdown artifact).
        metrics: Gate numbers, thresholds and model accuracy (Metrics artifact).
        classification_metrics: The model's held-out confusion matrix, when a model was trained
            (ClassificationMetrics artifact).
        Output: The training decision in one line.
    """
    from labelloop.failures import recorded
    from labelloop.stages.write_report import write_report as step

    with recorded(report.uri):
        result = step(
            quality_uri=quality.path,
            selection_uri=selection_summary.path,
            outcome=outcome,
            state_uri=state_uri,
            run_id=run_id,
            min_labeled_count=min_labeled_count,
            min_agreement=min_agreement,
            html_uri=report.path,
            markdown_uri=summary.path,
            review_uri=review.path if review is not None else "",
            items_uri=dataset.path if dataset is not None else "",
            annotations_uri=annotations.path if annotations is not None else "",
            job_uri=job.path if job is not None else "",
        )
    for name, value in sorted(result.metrics.items()):
        metrics.log_metric(name, value)
    if result.confusion_labels and result.confusion_matrix:
        classification_metrics.log_confusion_matrix(
            result.confusion_labels, result.confusion_matrix
        )
    return ("trained: " if result.trained else "not trained: ") + result.reason
