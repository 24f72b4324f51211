"""The Vertex AI target of the labeling pipeline: same DAG and gates, cloud-bound stages swapped.

    import file -> [If a Vertex model exists: importer -> ModelBatchPredictOp] -> select
        -> dataset -> labeling job -> quality gate (decides the gates)
        -> If decision == train:
              labeled import file ->
                If automl_classification:   ImageDatasetCreateOp -> AutoMLImageTrainingJobRunOp
                Elif automl_object_detection: ImageDatasetCreateOp -> AutoMLImageTrainingJobRunOp
                Else (text):                TextDatasetCreateOp -> train_model (custom job)
           Else: record why not
        -> report (every branch)

Design: one template for every task type. The GCPC op a branch runs is fixed at compile time,
so the task type picks a branch at run time (`dsl.If` on `vertex_task_plan`'s `trainer`), and
each branch's op carries its own compile-time settings (prediction type, AutoML model type and
node-hour budget, splits, machine type). Those settings are validated by
`TrainingSettings.validate()` before anything is compiled: `build_vertex_pipeline` refuses a
bad budget or a model type that does not fit its prediction type.

The Vertex dataset is created from the *labeled* import file (every trainable consolidated label
so far), right before training, because AutoML trains on a dataset's annotations; our own
`create_dataset` still validates this round's items and records them in the loop's state.
"""

from collections.abc import Callable
from typing import Any

from google_cloud_pipeline_components.types.artifact_types import VertexModel
from google_cloud_pipeline_components.v1.automl.training_job import AutoMLImageTrainingJobRunOp
from google_cloud_pipeline_components.v1.batch_predict_job import ModelBatchPredictOp
from google_cloud_pipeline_components.v1.custom_job import (
    create_custom_training_job_from_component,
)
from google_cloud_pipeline_components.v1.dataset import ImageDatasetCreateOp, TextDatasetCreateOp
from kfp import dsl

from components.gates import join_outcome
from components.generate_import_file import generate_import_file
from components.train_model import train_model
from components.vertex import (
    artifact_uri,
    batch_predict_instances,
    labeled_import_file,
    latest_vertex_model,
    no_predictions,
    record_vertex_model,
    vertex_task_plan,
)
from labelloop.config import ParameterSpec
from labelloop.vertex_config import ResourceSettings, TrainingSettings
from pipelines.dag import gates_training_and_report, label_round, with_failure_report
from pipelines.parameters import Params, pipeline_function, portable_parameters
from pipelines.stage_settings import configure_stages

PIPELINE_NAME = "labelloop-vertex-labeling"
# The parameters the Vertex target adds to the portable pipeline's (filled from `vertex:` by
# `VertexSettings.pipeline_parameters()`); the rest are `labelloop.config.PipelineParams`.
VERTEX_PARAMETER_SPECS = (
    ParameterSpec("project", str, "Google Cloud project of every Vertex resource."),
    ParameterSpec("location", str, "Vertex AI region.", "us-central1"),
    ParameterSpec(
        "service_account", str, "Identity of the custom training and batch prediction jobs.", ""
    ),
    ParameterSpec("network", str, "VPC the custom training job peers with (empty = none).", ""),
    ParameterSpec(
        "encryption_spec_key_name", str, "Cloud KMS key (CMEK) for datasets, jobs and models.", ""
    ),
    ParameterSpec(
        "resource_labels",
        dict,
        "Labels put on every dataset, job and model the run creates.",
        {},
    ),
    ParameterSpec(
        "model_resource_name",
        str,
        "An existing Vertex model to score the pool with (empty = the last round's AutoML "
        "model, if any).",
        "",
    ),
)
VERTEX_PARAMETERS = tuple(p.name for p in VERTEX_PARAMETER_SPECS)
# The portable parameters the Vertex pipeline does not take: it scores the pool itself.
PORTABLE_ONLY = ("predictions_uri",)


def vertex_parameters() -> list[ParameterSpec]:
    """Every parameter of the Vertex pipeline: the portable ones plus the Vertex ones."""
    return portable_parameters(exclude=PORTABLE_ONLY) + list(VERTEX_PARAMETER_SPECS)


def build_vertex_pipeline(
    training: TrainingSettings | None = None,
    resources: ResourceSettings | None = None,
    *,
    retries: int = 2,
) -> Callable[..., Any]:
    """Validate the compile-time settings and define the Vertex pipeline with them.

    Args:
        training: AutoML and custom-job settings; defaults when None.
        resources: CPU / memory per stage; defaults when None.
        retries: Retries of the stages that call external services.

    Raises:
        ConfigError: A setting the service would reject (checked here, before compile).
    """
    settings = training or TrainingSettings()
    settings.validate()
    sizes = resources or ResourceSettings()
    sizes.validate()
    custom_train_model = create_custom_training_job_from_component(
        train_model,
        display_name="labelloop-train-text",
        machine_type=settings.custom_job_machine_type,
    )

    def vertex_round(params: Params) -> None:
        """The DAG: the parameters' channels in, tasks out."""
        plan = vertex_task_plan(task_type=params.task_type).set_display_name(
            "Plan the Vertex branch"
        )
        listing = generate_import_file(
            source_uri=params.source_uri, task_type=params.task_type, state_uri=params.state_uri
        ).set_display_name("List source and write import file")

        prior = latest_vertex_model(
            state_uri=params.state_uri,
            model_resource_name=params.model_resource_name,
            location=params.location,
        ).set_display_name("Find the last Vertex model")
        with dsl.If(prior.outputs["resource_name"] != "", name="score-pool-with-vertex-model"):
            model = dsl.importer(
                artifact_uri=prior.outputs["artifact_uri"],
                artifact_class=VertexModel,
                reimport=False,
                metadata={"resourceName": prior.outputs["resource_name"]},
            ).set_display_name("Import the Vertex model")
            instances = batch_predict_instances(
                pool=listing.outputs["import_file"]
            ).set_display_name("Write batch prediction instances")
            scoring = ModelBatchPredictOp(
                project=params.project,
                location=params.location,
                job_display_name="labelloop-score-pool",
                model=model.output,
                gcs_source_uris=instances.outputs["source_uris"],
                instances_format="jsonl",
                predictions_format="jsonl",
                gcs_destination_output_uri_prefix=instances.outputs["output_prefix"],
                machine_type=settings.batch_predict_machine_type,
                service_account=params.service_account,
                labels=params.resource_labels,
                encryption_spec_key_name=params.encryption_spec_key_name,
            ).set_display_name("Score the pool (batch prediction)")
            scored = artifact_uri(
                artifact=scoring.outputs["gcs_output_directory"]
            ).set_display_name("Predictions folder")
        with dsl.Else(name="no-vertex-model-yet"):
            unscored = no_predictions().set_display_name("No predictions yet")

        round_ = label_round(
            params,
            pool=listing.outputs["import_file"],
            predictions_uri=dsl.OneOf(scored.output, unscored.output),
            display_name=PIPELINE_NAME,
            dataset_task_name="Validate and record this round's items",
        )
        vertex = {
            "project": params.project,
            "location": params.location,
            "labels": params.resource_labels,
            "encryption_spec_key_name": params.encryption_spec_key_name,
        }

        def automl(import_file: Any, *, prediction_type: str, multi_label: Any, name: str) -> Any:
            """An image dataset, an AutoML training job on it, and the model recorded."""
            data = ImageDatasetCreateOp(
                display_name=PIPELINE_NAME,
                gcs_source=import_file.outputs["gcs_uri"],
                import_schema_uri=plan.outputs["import_schema_uri"],
                **vertex,
            ).set_display_name(f"Create Vertex image dataset ({name})")
            job = AutoMLImageTrainingJobRunOp(
                display_name=f"labelloop-automl-{prediction_type.replace('_', '-')}",
                dataset=data.outputs["dataset"],
                prediction_type=prediction_type,
                multi_label=multi_label,
                model_type=settings.model_type(prediction_type),
                budget_milli_node_hours=settings.budget_milli_node_hours(prediction_type),
                disable_early_stopping=settings.disable_early_stopping,
                training_fraction_split=settings.training_fraction_split,
                validation_fraction_split=settings.validation_fraction_split,
                test_fraction_split=settings.test_fraction_split,
                project=params.project,
                location=params.location,
                labels=params.resource_labels,
                training_encryption_spec_key_name=params.encryption_spec_key_name,
                model_encryption_spec_key_name=params.encryption_spec_key_name,
            ).set_display_name(f"AutoML image {name}")
            return record_vertex_model(
                model=job.outputs["model"],
                state_uri=params.state_uri,
                task_type=params.task_type,
                train_items=import_file.outputs["items"],
            ).set_display_name(f"Record the {name} model")

        def train() -> Any:
            import_file = labeled_import_file(
                consolidated=round_.gate.outputs["consolidated"],
                dataset=round_.dataset.outputs["dataset"],
                task_type=params.task_type,
                state_uri=params.state_uri,
            ).set_display_name("Write the labeled import file")
            with dsl.If(
                plan.outputs["trainer"] == "automl_classification", name="automl-classification"
            ):
                classified = automl(
                    import_file,
                    prediction_type="classification",
                    multi_label=plan.outputs["multi_label"],
                    name="classification",
                )
            with dsl.Elif(
                plan.outputs["trainer"] == "automl_object_detection",
                name="automl-object-detection",
            ):
                detected = automl(
                    import_file,
                    prediction_type="object_detection",
                    multi_label=False,
                    name="object detection",
                )
            with dsl.Else(name="text-custom-job"):
                TextDatasetCreateOp(
                    display_name=PIPELINE_NAME,
                    gcs_source=import_file.outputs["gcs_uri"],
                    import_schema_uri=plan.outputs["import_schema_uri"],
                    **vertex,
                ).set_display_name("Create Vertex text dataset")
                text_training = custom_train_model(
                    service_account=params.service_account,
                    network=params.network,
                    consolidated=round_.gate.outputs["consolidated"],
                    dataset=round_.dataset.outputs["dataset"],
                    task_type=params.task_type,
                    label_set=params.labels,
                    state_uri=params.state_uri,
                    holdout_fraction=params.holdout_fraction,
                    seed=params.seed,
                    **vertex,
                ).set_display_name("Train text model (custom job)")
            return (
                join_outcome(
                    outcome=dsl.OneOf(
                        classified.output, detected.output, text_training.outputs["outcome"]
                    )
                )
                .set_display_name("Join training outcome")
                .output
            )

        gates_training_and_report(
            round_,
            min_labeled_count=params.min_labeled_count,
            min_agreement=params.min_agreement,
            state_uri=params.state_uri,
            train=train,
        )
        configure_stages(sizes, retries=retries)

    pipeline = pipeline_function(
        with_failure_report(vertex_round),
        name="vertex_labeling_pipeline",
        summary="One labeling round on Vertex AI.",
        parameters=vertex_parameters(),
    )
    return dsl.pipeline(
        name=PIPELINE_NAME,
        description=(
            "Select, label, check and consolidate labels, then train on Vertex AI "
            "(AutoML for images, a custom job for text) when the gates open."
        ),
    )(pipeline)


# The default template; `python -m pipelines compile` writes compiled/vertex_labeling_pipeline.json.
vertex_labeling_pipeline = build_vertex_pipeline()
