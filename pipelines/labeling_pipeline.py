"""The portable labeling pipeline: our own components only, so it runs on kfp.local,
Vertex AI Pipelines and any Kubeflow Pipelines cluster.

    import file -> select -> dataset -> labeling job -> quality gate
        -> If label_count >= min_labeled_count
              -> If agreement >= min_agreement: train      Else: record why not
           Else: record why not
        -> report (every branch)
"""

from typing import Any

from kfp import dsl

from components.generate_import_file import generate_import_file
from components.train_model import train_model
from pipelines.dag import gates_training_and_report, label_round
from pipelines.stage_settings import configure_stages

PIPELINE_NAME = "labelloop-labeling"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Select, label, check and consolidate labels, then train when the gates open.",
)
def labeling_pipeline(
    source_uri: str,
    state_uri: str,
    task_type: str = "image_classification",
    labels: str = "0,1,2,3,4,5,6,7,8,9",
    labelers_per_item: int = 3,
    selection_size: int = 200,
    selection_strategy: str = "cluster_margin",
    class_balance: bool = False,
    predictions_uri: str = "",
    provider: str = "simulated",
    provider_options: str = "{}",
    consolidation_method: str = "ds",
    agreement_metric: str = "krippendorff_alpha",
    min_labeled_count: int = 100,
    min_agreement: float = 0.6,
    min_confidence: float = 0.0,
    gold_uri: str = "",
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> None:
    """One labeling round.

    Args:
        source_uri: Where the raw items are: `gs://bucket/prefix` or a local directory.
        state_uri: Folder holding the loop's state between rounds (imports, labels, model).
        task_type: image_classification, image_multilabel_classification,
            image_object_detection, text_classification or text_entity_extraction.
        labels: The label set, comma-separated.
        labelers_per_item: Different annotators per item.
        selection_size: Items to send for labeling this round.
        selection_strategy: Active-learning strategy: random, least_confidence, margin, entropy,
            k_center or cluster_margin (batch-aware; k-center diversity on a cold start).
        class_balance: Spread each batch evenly over the predicted classes.
        predictions_uri: Optional predictions to select with (Vertex batch-prediction output or
            a predictions JSONL); "" uses the previous round's local model.
        provider: Labeling provider: simulated, label_studio, gemini or import.
        provider_options: Provider options as a JSON object (never secrets).
        consolidation_method: ds (Dawid-Skene, the default) or mv (majority vote).
        agreement_metric: The metric the agreement gate compares.
        min_labeled_count: The count gate: consolidated labels needed to train.
        min_agreement: The agreement gate: minimum inter-annotator agreement.
        min_confidence: Consolidated confidence an item needs to count as labeled.
        gold_uri: Optional `item,label` CSV of known answers, clamped in consolidation and
            used to score each annotator ("" for none).
        holdout_fraction: Share of labels held out to evaluate the model.
        seed: Seed for selection, splits and training.
    """
    listing = generate_import_file(
        source_uri=source_uri, task_type=task_type, state_uri=state_uri
    ).set_display_name("List source and write import file")
    round_ = label_round(
        pool=listing.outputs["import_file"],
        predictions_uri=predictions_uri,
        display_name=PIPELINE_NAME,
        state_uri=state_uri,
        task_type=task_type,
        labels=labels,
        labelers_per_item=labelers_per_item,
        selection_size=selection_size,
        selection_strategy=selection_strategy,
        class_balance=class_balance,
        provider=provider,
        provider_options=provider_options,
        consolidation_method=consolidation_method,
        agreement_metric=agreement_metric,
        min_confidence=min_confidence,
        gold_uri=gold_uri,
        seed=seed,
    )

    def train() -> Any:
        return (
            train_model(
                consolidated=round_.gate.outputs["consolidated"],
                dataset=round_.dataset.outputs["dataset"],
                task_type=task_type,
                label_set=labels,
                state_uri=state_uri,
                holdout_fraction=holdout_fraction,
                seed=seed,
            )
            .set_display_name("Train model")
            .outputs["outcome"]
        )

    gates_training_and_report(
        round_,
        min_labeled_count=min_labeled_count,
        min_agreement=min_agreement,
        agreement_metric=agreement_metric,
        state_uri=state_uri,
        train=train,
    )
    # No retries here: kfp.local honours them, and a local failure should surface at once.
    configure_stages(retries=0)
