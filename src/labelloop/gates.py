"""The gates' decisions in words, shared by the closed-branch component and the report."""

from __future__ import annotations

import json


def closed_reason(*, gate: str, value: float, threshold: float, metric: str) -> str:
    """Why a gate stayed closed, e.g. `312 of 500 labels` or `krippendorff_alpha 0.41 < 0.60`."""
    if gate == "label_count":
        return f"{int(value)} of {int(threshold)} labels"
    return f"{metric} {value:.3f} < {threshold:.3f}"


def closed_outcome(*, gate: str, value: float, threshold: float, metric: str) -> str:
    """The JSON outcome of a closed gate (what the report and the run summary read)."""
    return json.dumps(
        {
            "trained": False,
            "gate": gate,
            "reason": closed_reason(gate=gate, value=value, threshold=threshold, metric=metric),
            "value": value,
            "threshold": threshold,
            "metric": metric,
        },
        sort_keys=True,
    )
