"""Stage 6 component (local target): train and evaluate the model on the consolidated labels."""

from typing import NamedTuple

from kfp import dsl

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_model(
    consolidated: dsl.Input[dsl.Dataset],
    dataset: dsl.Input[dsl.Dataset],
    task_type: str,
    label_set: str,
    state_uri: str,
    holdout_fraction: float,
    seed: int,
    model: dsl.Output[dsl.Model],
    classification_metrics: dsl.Output[dsl.ClassificationMetrics],
    metrics: dsl.Output[dsl.Metrics],
) -> NamedTuple("TrainOutputs", [("accuracy", float), ("outcome", str)]):
    """Train a classifier on this and earlier rounds' labels and evaluate it on a held-out split.

    Args:
        consolidated: This round's consolidated labels.
        dataset: This round's items (for inline text).
        task_type: A labelloop task type.
        label_set: The label set, comma-separated. (Not `labels`: when this component runs as
            a Vertex custom job, `create_custom_training_job_from_component` adds its own
            `labels` input, the job's resource labels, which would shadow ours.)
        state_uri: The loop's state (earlier labels in, the model out for the next round).
        holdout_fraction: Share held out for evaluation.
        seed: Split and solver seed.

    Returns:
        model: The fitted model folder (Model artifact: model.pkl, model.json).
        classification_metrics: Confusion matrix on the held-out split (ClassificationMetrics).
        metrics: accuracy, train and test sizes, eval_accuracy on the fixed evaluation set
            (Metrics artifact).
        accuracy: Held-out accuracy (noisy labels of mostly actively selected items).
        outcome: JSON summary of the round's training decision, for the report.
    """
    from labelloop.failures import recorded
    from labelloop.gates import trained_outcome
    from labelloop.stages.train_model import train_model as step

    with recorded(model.uri):
        result = step(
            consolidated_uri=consolidated.path,
            items_uri=dataset.path,
            task_type=task_type,
            labels=label_set,
            state_uri=state_uri,
            holdout_fraction=holdout_fraction,
            seed=seed,
            model_uri=model.path,
        )
    model.metadata["accuracy"] = result.accuracy
    model.metadata["framework"] = "scikit-learn"
    classification_metrics.log_confusion_matrix(result.labels, result.confusion_matrix)
    metrics.log_metric("accuracy", result.accuracy)
    metrics.log_metric("train_items", result.train_items)
    metrics.log_metric("test_items", result.test_items)
    if result.eval_accuracy is not None:  # the fixed evaluation set's figure
        metrics.log_metric("eval_accuracy", result.eval_accuracy)
        metrics.log_metric("eval_items", result.eval_items)
    outcome = trained_outcome(
        reason=f"trained on {result.train_items} items",
        accuracy=result.accuracy,
        train_items=result.train_items,
        test_items=result.test_items,
        labels=result.labels,
        confusion_matrix=result.confusion_matrix,
        eval_accuracy=result.eval_accuracy,
        eval_ci=list(result.eval_ci),
        eval_items=result.eval_items,
        curve=result.curve,
    )
    return (result.accuracy, outcome)
