"""Components for the gates' closed branches and for joining the branches' outcomes."""

from kfp import dsl

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def record_gate_decision(
    gate: str,
    label_count: int,
    min_labeled_count: int,
    agreement: float,
    min_agreement: float,
    metric: str,
) -> str:
    """Record why training did not run.

    Args:
        gate: The gate that stayed closed: `label_count` or `agreement`.
        label_count: Consolidated labels counted by the quality gate.
        min_labeled_count: The count gate's threshold.
        agreement: The measured agreement.
        min_agreement: The agreement gate's threshold.
        metric: The agreement metric's name (e.g. `krippendorff_alpha`).

    Returns:
        Output: JSON outcome `{trained: false, gate, reason, value, threshold}` for the report.
    """
    from labelloop.gates import closed_outcome

    if gate == "label_count":
        return closed_outcome(
            gate=gate, value=label_count, threshold=min_labeled_count, metric="label_count"
        )
    return closed_outcome(gate=gate, value=agreement, threshold=min_agreement, metric=metric)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def join_outcome(outcome: str) -> str:
    """Pass the agreement gate's outcome on, so the count gate's branches can be joined.

    KFP cannot nest `dsl.OneOf`, so the inner If/Else is joined here first.

    Args:
        outcome: The inner gate's outcome (from training or from the closed branch).

    Returns:
        Output: The same JSON outcome.
    """
    return outcome
