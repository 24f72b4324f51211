"""The DAG pieces both pipelines share: one labeling round, the gates, and the report.

A pipeline function calls these inside its body; the tasks they create join that pipeline.
Only what differs between targets stays in the pipeline modules: how the pool is scored
(`predictions_uri`) and how a model is trained (the `train` callback).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from kfp import dsl

from components.create_dataset import create_dataset
from components.failure_report import write_failure_report
from components.gates import record_gate_decision
from components.quality_gate import quality_gate
from components.reconcile import reconcile_jobs
from components.run_labeling_job import run_labeling_job
from components.select_for_labeling import select_for_labeling
from components.write_report import write_report
from labelloop.gates import TRAIN


@contextlib.contextmanager
def failure_reported(*, state_uri: Any) -> Iterator[Any]:
    """Run the tasks created in the block under KFP's exit handler: whatever happens to them,
    `write_failure_report` runs last and, if the round failed, says which stage failed, why
    and what was left untouched (kfp.local and Vertex AI both run exit handlers).

    Yields:
        The failure-report task.
    """
    exit_task = write_failure_report(
        state_uri=state_uri, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER
    ).set_display_name("Write failure report (if the round failed)")
    with dsl.ExitHandler(exit_task, name="labeling-round"):
        yield exit_task


def with_failure_report(body: Callable[[Any], None]) -> Callable[[Any], None]:
    """`body` (a pipeline's DAG builder taking the parameters) run under `failure_reported`."""

    def handled(params: Any) -> None:
        with failure_reported(state_uri=params.state_uri):
            body(params)

    handled.__module__ = body.__module__
    return handled


@dataclasses.dataclass(frozen=True)
class Round:
    """The tasks of one labeling round, up to and including the quality gate."""

    reconcile: Any
    selection: Any
    dataset: Any
    labeling: Any
    gate: Any


def label_round(
    params: Any,
    *,
    pool: Any,
    predictions_uri: Any,
    display_name: str,
    dataset_task_name: str = "Create dataset",
) -> Round:
    """Reconcile, then stages 2-5: top up the open queue from `pool`, register the items,
    queue them at the provider, check every label collected so far.

    Reconcile runs first (it takes the state's lease and collects what people labeled since the
    last run); selection waits for it, so it sees the queue after reconcile.

    Args:
        params: The pipeline's parameters (`pipelines.parameters.Params`).
        pool: The import file to select from.
        predictions_uri: Predictions to select with ("" for the last local model).
        display_name: The dataset's display name.
        dataset_task_name: Stage 3's task name in the console (the Vertex target creates its
            Vertex dataset later, from the labels, so there stage 3 only validates and records).
    """
    reconcile = reconcile_jobs(
        state_uri=params.state_uri,
        provider=params.provider,
        provider_options=params.provider_options,
        max_job_age_hours=params.max_job_age_hours,
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    ).set_display_name("Reconcile open labeling jobs")
    selection = select_for_labeling(
        pool=pool,
        state_uri=params.state_uri,
        task_type=params.task_type,
        labels=params.labels,
        strategy=params.selection_strategy,
        k=params.selection_size,
        seed=params.seed,
        predictions_uri=predictions_uri,
        class_balance=params.class_balance,
        random_share=params.random_share,
        eval_size=params.eval_size,
        budget=params.budget,
        labelers_per_item=params.labelers_per_item,
        provider=params.provider,
        provider_options=params.provider_options,
        source_uri=params.source_uri,
        queue_size=params.queue_size,
    ).set_display_name("Select items to label (active learning)")
    selection.after(reconcile)
    dataset = create_dataset(
        selected=selection.outputs["selected"],
        task_type=params.task_type,
        display_name=display_name,
        state_uri=params.state_uri,
    ).set_display_name(dataset_task_name)
    labeling = run_labeling_job(
        dataset=dataset.outputs["dataset"],
        task_type=params.task_type,
        labels=params.labels,
        provider=params.provider,
        provider_options=params.provider_options,
        labelers_per_item=params.labelers_per_item,
        budget=params.budget,
        state_uri=params.state_uri,
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    ).set_display_name("Run labeling job")
    gate = quality_gate(
        annotations=labeling.outputs["annotations"],
        job=labeling.outputs["job"],
        task_type=params.task_type,
        labels=params.labels,
        consolidation_method=params.consolidation_method,
        agreement_metric=params.agreement_metric,
        min_confidence=params.min_confidence,
        min_labeled_count=params.min_labeled_count,
        min_agreement=params.min_agreement,
        unmeasurable_agreement=params.unmeasurable_agreement,
        min_model_precision=params.min_model_precision,
        min_agreement_items=params.min_agreement_items,
        flagged_annotators=params.flagged_annotators,
        state_uri=params.state_uri,
        gold_uri=params.gold_uri,
    ).set_display_name("Quality gate: agreement, consolidation, decision")
    return Round(reconcile, selection, dataset, labeling, gate)


def gates_training_and_report(
    round_: Round,
    *,
    min_labeled_count: Any,
    min_agreement: Any,
    state_uri: Any,
    train: Callable[[], Any],
) -> Any:
    """`If` the quality gate decided `train`: `train()`; else record why not. Then the report,
    fed by whichever branch ran.

    The rule (enough labels, then agreement or the policy for unmeasurable agreement) is
    applied once, by the quality gate (`labelloop.gates.decide`); the DAG only compares its
    recorded decision.

    Args:
        round_: The round whose gate decides.
        min_labeled_count: The count gate's threshold (the report shows it).
        min_agreement: The agreement gate's threshold (the report shows it).
        state_uri: The loop's state (the report records the round there).
        train: Creates the training tasks (inside the gate) and returns the channel of the
            training outcome JSON.

    Returns:
        The report task.
    """
    gate = round_.gate
    with dsl.If(gate.outputs["decision"] == TRAIN, name="gates-open"):
        trained = train()
    with dsl.Else(name="gates-closed"):
        closed = record_gate_decision(outcome=gate.outputs["outcome"]).set_display_name(
            "Gate closed: record why"
        )
    return write_report(
        quality=gate.outputs["quality"],
        selection_summary=round_.selection.outputs["summary"],
        review=gate.outputs["review"],
        dataset=round_.dataset.outputs["dataset"],
        annotations=round_.labeling.outputs["annotations"],
        job=round_.labeling.outputs["job"],
        outcome=dsl.OneOf(trained, closed.output),
        state_uri=state_uri,
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        min_labeled_count=min_labeled_count,
        min_agreement=min_agreement,
    ).set_display_name("Write run report")
