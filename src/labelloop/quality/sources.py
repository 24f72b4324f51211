"""Who answered: people, or a model whose accuracy is known from a calibration set.

A model's auto-accepted answer (Gemini through `gemini_then_human`) is not an anonymous
worker: the routing provider measured, on human-labeled calibration items, how often answers
above its threshold are right and which classes it confuses. Consolidation holds that
confusion fixed (instead of re-estimating it from the few items it shares with people), and
agreement is measured between people only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """A model annotator with its calibrated accuracy.

    Attributes:
        annotator: The annotator name its answers carry.
        precision: Share of its accepted calibration answers that were right.
        confusion: (K, K) row-normalised P(answer | true class), smoothed; None when only the
            precision is known (then errors spread evenly over the other classes).
        sample: Accepted calibration items behind the estimate.
    """

    annotator: str
    precision: float
    confusion: np.ndarray | None = None
    sample: int = 0

    def error_matrix(self, n_labels: int, *, smoothing: float = 1.0) -> np.ndarray:
        """(K, K) P(answer | true): the calibration counts smoothed toward the precision."""
        even = np.full((n_labels, n_labels), (1.0 - self.precision) / max(n_labels - 1, 1))
        np.fill_diagonal(even, self.precision)
        if self.confusion is None or self.confusion.shape != (n_labels, n_labels):
            return even
        # Each row: its observed counts plus `smoothing` pseudo-items spread like `even`.
        counts = self.confusion + smoothing * even
        return counts / counts.sum(axis=1, keepdims=True)


def model_sources(job_record: Mapping[str, Any]) -> dict[str, ModelSource]:
    """The calibrated model annotators named in a labeling job record (`{}` when none).

    The routing provider records `provider_summary.model_annotator` and
    `provider_summary.calibration` (`precision`, `accepted`, `confusion`).
    """
    summary = job_record.get("provider_summary")
    if not isinstance(summary, Mapping):
        return {}
    annotator = summary.get("model_annotator")
    calibration = summary.get("calibration")
    if not isinstance(annotator, str) or not isinstance(calibration, Mapping):
        return {}
    precision = calibration.get("precision")
    if isinstance(precision, bool) or not isinstance(precision, int | float):
        return {}
    confusion = calibration.get("confusion")
    matrix = None
    if isinstance(confusion, list) and confusion and all(isinstance(r, list) for r in confusion):
        try:
            matrix = np.array(confusion, dtype=np.float64)
        except ValueError:
            matrix = None
        if matrix is not None and (matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]):
            matrix = None
    accepted = calibration.get("accepted")
    return {
        annotator: ModelSource(
            annotator,
            float(precision),
            matrix,
            int(accepted) if isinstance(accepted, int) else 0,
        )
    }
