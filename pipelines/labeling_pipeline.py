"""The portable labeling pipeline: our own components only, so it runs on kfp.local,
Vertex AI Pipelines and any Kubeflow Pipelines cluster.

    import file -> select -> dataset -> labeling job -> quality gate (decides the gates)
        -> If decision == train: train      Else: record why not
        -> report (every branch)
"""

from typing import Any

from kfp import dsl

from components.generate_import_file import generate_import_file
from components.train_model import train_model
from pipelines.dag import gates_training_and_report, label_round, with_failure_report
from pipelines.parameters import Params, pipeline_function, portable_parameters
from pipelines.stage_settings import configure_stages

PIPELINE_NAME = "labelloop-labeling"


def _labeling_round(params: Params) -> None:
    """The DAG: the parameters' channels in, tasks out."""
    listing = generate_import_file(
        source_uri=params.source_uri, task_type=params.task_type, state_uri=params.state_uri
    ).set_display_name("List source and write import file")
    round_ = label_round(
        params,
        pool=listing.outputs["import_file"],
        predictions_uri=params.predictions_uri,
        display_name=PIPELINE_NAME,
    )

    def train() -> Any:
        return (
            train_model(
                consolidated=round_.gate.outputs["consolidated"],
                dataset=round_.dataset.outputs["dataset"],
                task_type=params.task_type,
                label_set=params.labels,
                state_uri=params.state_uri,
                holdout_fraction=params.holdout_fraction,
                seed=params.seed,
            )
            .set_display_name("Train model")
            .outputs["outcome"]
        )

    gates_training_and_report(
        round_,
        min_labeled_count=params.min_labeled_count,
        min_agreement=params.min_agreement,
        state_uri=params.state_uri,
        train=train,
    )
    # No retries here: kfp.local honours them, and a local failure should surface at once.
    configure_stages(retries=0)


# The parameters (names, types, defaults, docs) are `labelloop.config.PipelineParams`'s.
labeling_pipeline = dsl.pipeline(
    name=PIPELINE_NAME,
    description="Select, label, check and consolidate labels, then train when the gates open.",
)(
    pipeline_function(
        with_failure_report(_labeling_round),
        name="labeling_pipeline",
        summary="One labeling round.",
        parameters=portable_parameters(),
    )
)
