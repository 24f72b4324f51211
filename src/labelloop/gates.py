"""The gates: the one rule that decides whether a round trains, and every outcome's shape.

The quality step calls `decide` and records the `GateDecision` twice: in its quality JSON (what
the report and the local runner read) and as its `decision` output (what the DAG's `dsl.If`
compares). Nothing else re-evaluates the rule. The outcome JSON a round ends with (trained, or
which gate stayed closed and why) is built here too: `trained_outcome` / `GateDecision.outcome`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

#: The `decision` output's values: the DAG trains on TRAIN and records why not on CLOSED.
TRAIN = "train"
CLOSED = "closed"

#: What the agreement gate does when agreement cannot be measured (one answer per item, one
#: class, only model answers, or fewer multiply-labeled items than `min_agreement_items`):
#: `close` keeps the gate closed; `train` opens it (you accept unmeasured labels);
#: `model_precision` (the default) opens it when the round's auto-accepted model labels carry
#: a calibrated precision of at least `min_model_precision`, else keeps it closed.
UNMEASURABLE_POLICIES = ("close", "train", "model_precision")


@dataclasses.dataclass(frozen=True)
class GatePolicy:
    """The gates' thresholds and the policy for agreement that cannot be measured.

    Attributes:
        min_labeled_count: The count gate: trainable labels needed.
        min_agreement: The agreement gate: the metric's minimum.
        unmeasurable: One of `UNMEASURABLE_POLICIES`.
        min_model_precision: The `model_precision` policy's threshold.
        min_agreement_items: Items answered by two or more people that agreement needs to
            count as measured (fewer: the unmeasurable policy decides).
    """

    min_labeled_count: int
    min_agreement: float
    unmeasurable: str = "model_precision"
    min_model_precision: float = 0.95
    min_agreement_items: int = 10

    def __post_init__(self) -> None:
        if self.unmeasurable not in UNMEASURABLE_POLICIES:
            raise ValueError(
                f"unknown policy {self.unmeasurable!r} for unmeasurable agreement; "
                f"expected one of {', '.join(UNMEASURABLE_POLICIES)}"
            )


@dataclasses.dataclass(frozen=True)
class GateDecision:
    """Both gates' states and the rule that decided.

    Attributes:
        train: Whether the round trains.
        gate: `open` when it trains, else the gate that stayed closed (`label_count` or
            `agreement`).
        rule: The rule that decided: `label_count`, `agreement`, or
            `unmeasurable:<policy>` when agreement could not be measured.
        reason: The decision in words (the console, the summary and the report show it).
        label_count: Trainable labels counted.
        min_labeled_count: The count gate's threshold.
        agreement: The measured agreement, None when not measurable.
        agreement_reason: Why it could not be measured ("" when it was).
        min_agreement: The agreement gate's threshold.
        metric: The agreement metric's name.
        count_passed: The count gate is open.
        agreement_evaluated: The agreement gate was reached (it sits behind the count gate).
        agreement_passed: The agreement gate is open.
        model_precision: Calibrated precision of auto-accepted model labels, when known.
    """

    train: bool
    gate: str
    rule: str
    reason: str
    label_count: int
    min_labeled_count: int
    agreement: float | None
    agreement_reason: str
    min_agreement: float
    metric: str
    count_passed: bool
    agreement_evaluated: bool
    agreement_passed: bool
    model_precision: float | None = None

    @property
    def output(self) -> str:
        """The `decision` component output the DAG conditions on: TRAIN or CLOSED."""
        return TRAIN if self.train else CLOSED

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateDecision:
        """Read a recorded decision (fields a reader does not know are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def outcome(self) -> str:
        """The outcome JSON of a round that did not train (what the report records)."""
        if self.gate == "label_count":
            value: float | None = float(self.label_count)
            threshold, metric = float(self.min_labeled_count), "label_count"
        else:
            value, threshold, metric = self.agreement, self.min_agreement, self.metric
        return json.dumps(
            {
                "trained": False,
                "gate": self.gate,
                "rule": self.rule,
                "reason": self.reason,
                "value": value,
                "threshold": threshold,
                "metric": metric,
            },
            sort_keys=True,
        )


def closed_reason(*, gate: str, value: float | None, threshold: float, metric: str) -> str:
    """Why a gate stayed closed, e.g. `312 of 500 labels` or `krippendorff_alpha 0.41 < 0.60`."""
    if gate == "label_count":
        return f"{int(value or 0)} of {int(threshold)} labels"
    if value is None:
        return f"{metric} not measurable"
    return f"{metric} {value:.3f} < {threshold:.3f}"


def format_agreement(value: float | None, reason: str) -> str:
    """Agreement for a console line: `0.458`, or `null (reason)`; never a made-up 0."""
    if value is None or not math.isfinite(value):
        return f"null ({reason or 'not measurable'})"
    return f"{value:.3f}"


def decide(
    *,
    label_count: int,
    agreement: float | None,
    agreement_reason: str = "",
    agreement_items: int | None = None,
    metric: str,
    policy: GatePolicy,
    model_precision: float | None = None,
) -> GateDecision:
    """Apply the gate rule: enough labels, then agreement (or the unmeasurable policy).

    Args:
        label_count: Trainable labels counted by the quality step.
        agreement: The measured agreement; None (or NaN) when it could not be measured.
        agreement_reason: Why it could not be measured.
        agreement_items: Items it was measured on (None: not counted, no minimum applies).
        metric: The agreement metric's name.
        policy: Thresholds and the policy for unmeasurable agreement.
        model_precision: Calibrated precision of the model's auto-accepted labels, if any.
    """
    if agreement is not None and not math.isfinite(agreement):
        agreement = None
    if (
        agreement is not None
        and agreement_items is not None
        and agreement_items < policy.min_agreement_items
    ):
        # Too few shared items for the number to mean anything: report it, do not gate on it.
        agreement_reason = (
            f"only {agreement_items} item(s) answered by two or more people; "
            f"{policy.min_agreement_items} needed"
        )
        agreement = None

    def make(
        *, train: bool, gate: str, rule: str, reason: str, count_passed: bool, reached: bool
    ) -> GateDecision:
        return GateDecision(
            train=train,
            gate=gate,
            rule=rule,
            reason=reason,
            label_count=int(label_count),
            min_labeled_count=int(policy.min_labeled_count),
            agreement=agreement,
            agreement_reason=agreement_reason if agreement is None else "",
            min_agreement=float(policy.min_agreement),
            metric=metric,
            count_passed=count_passed,
            agreement_evaluated=reached,
            agreement_passed=train,
            model_precision=model_precision,
        )

    if label_count < policy.min_labeled_count:
        reason = closed_reason(
            gate="label_count",
            value=label_count,
            threshold=policy.min_labeled_count,
            metric="label_count",
        )
        return make(
            train=False,
            gate="label_count",
            rule="label_count",
            reason=reason,
            count_passed=False,
            reached=False,
        )
    if agreement is not None:
        passed = agreement >= policy.min_agreement
        reason = (
            f"{metric} {agreement:.3f} >= {policy.min_agreement:.3f}"
            if passed
            else closed_reason(
                gate="agreement", value=agreement, threshold=policy.min_agreement, metric=metric
            )
        )
        return make(
            train=passed,
            gate="open" if passed else "agreement",
            rule="agreement",
            reason=reason,
            count_passed=True,
            reached=True,
        )
    why = agreement_reason or "not measurable"
    rule = f"unmeasurable:{policy.unmeasurable}"
    if policy.unmeasurable == "train":
        passed, reason = True, f"{metric} not measurable ({why}); policy 'train' opens the gate"
    elif policy.unmeasurable == "model_precision":
        passed = model_precision is not None and model_precision >= policy.min_model_precision
        if model_precision is None:
            reason = (
                f"{metric} not measurable ({why}) and no auto-accepted model labels with a "
                "calibrated precision to judge by (policy 'model_precision')"
            )
        else:
            sign = ">=" if passed else "<"
            reason = (
                f"{metric} not measurable ({why}); calibrated model precision "
                f"{model_precision:.3f} {sign} {policy.min_model_precision:.3f}"
            )
    else:
        passed, reason = False, f"{metric} not measurable ({why}); policy 'close'"
    return make(
        train=passed,
        gate="open" if passed else "agreement",
        rule=rule,
        reason=reason,
        count_passed=True,
        reached=True,
    )


def trained_outcome(*, reason: str, **fields: Any) -> str:
    """The outcome JSON of a round that trained: `{trained: true, gate: "open", reason, ...}`.

    `fields` are the trainer's numbers (accuracy, train_items, test_items, labels,
    confusion_matrix, model, ...), recorded as given.
    """
    return json.dumps({**fields, "trained": True, "gate": "open", "reason": reason}, sort_keys=True)


def read_outcome(text: str) -> dict[str, Any]:
    """An outcome JSON object (`{}` for empty text).

    Raises:
        ValueError: Not a JSON object.
    """
    data = json.loads(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise ValueError("an outcome must be a JSON object")
    return data
