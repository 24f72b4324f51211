"""Stage 2 component: active-learning selection of the next batch to label."""

from typing import NamedTuple

from kfp import dsl

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def select_for_labeling(
    pool: dsl.Input[dsl.Dataset],
    state_uri: str,
    task_type: str,
    labels: str,
    strategy: str,
    k: int,
    seed: int,
    predictions_uri: str,
    class_balance: bool,
    random_share: float,
    eval_size: int,
    budget: str,
    labelers_per_item: int,
    provider: str,
    provider_options: str,
    source_uri: str,
    queue_size: int,
    selected: dsl.Output[dsl.Dataset],
    summary: dsl.Output[dsl.Artifact],
    rejects: dsl.Output[dsl.Dataset],
) -> NamedTuple(
    "SelectOutputs",
    [("pool_size", int), ("selected_count", int), ("strategy_used", str), ("stop_reason", str)],
):
    """Pick the `k` items the previous round's model is least sure of (random on a cold start),
    no more than the room left in the open queue (backpressure).

    Args:
        pool: The import file of candidate items.
        state_uri: The loop's state (holds the previous round's model).
        task_type: A labelloop task type.
        labels: The label set, comma-separated.
        strategy: Selection strategy name.
        k: Batch size.
        seed: Seed for random and tie-breaking.
        predictions_uri: Predictions to score with (a Vertex batch-prediction output folder or a
            predictions JSONL); "" scores with the previous round's local model.
        class_balance: Spread the picks evenly over the predicted classes.
        random_share: Share of the batch picked at random (the control arm).
        eval_size: Items of the fixed evaluation set (chosen once at random, labeled once,
            never trained on); 0 for none.
        budget: Rates and limits as JSON: fewer items rather than overspend.
        labelers_per_item: Human labels per item (for the cost estimate).
        provider: The labeling provider (its model's price enters the estimate).
        provider_options: Its options as JSON.
        source_uri: The source: a predicted item outside it is refused, never read.
        queue_size: The open queue's size in items (0 = `k`); a full queue selects nothing.

    Returns:
        selected: The chosen items as a Vertex import JSONL (Dataset artifact).
        summary: Scores, score histogram and predicted class mix (JSON artifact).
        rejects: Bad pool records, refused predicted items and bad prediction lines, each with
            file, line, field and reason (Dataset artifact, JSONL).
        pool_size: Items scored.
        selected_count: Items chosen.
        strategy_used: The strategy that ran (`random` or `k_center` on a cold start).
        stop_reason: Why nothing more was selected (the budget is spent), or "".
    """
    from labelloop.failures import recorded
    from labelloop.stages.select_for_labeling import select_for_labeling as step

    with recorded(selected.uri):
        result = step(
            import_uri=pool.path,
            state_uri=state_uri,
            task_type=task_type,
            labels=labels,
            strategy=strategy,
            k=k,
            seed=seed,
            output_uri=selected.path,
            summary_uri=summary.path,
            predictions_uri=predictions_uri,
            class_balance=class_balance,
            source_uri=source_uri,
            random_share=random_share,
            eval_size=eval_size,
            queue_size=queue_size,
            budget=budget,
            labelers_per_item=labelers_per_item,
            provider=provider,
            provider_options=provider_options,
            rejects_uri=rejects.path,
        )
    selected.metadata["items"] = result.selected
    return (result.pool, result.selected, result.strategy, result.stop_reason)
