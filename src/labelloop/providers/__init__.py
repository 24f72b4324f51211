"""Labeling providers: who labels the items.

A simulated workforce, Label Studio (own team), Gemini (auto-labeling, routed to people below a
calibrated threshold) and imports of annotations made elsewhere; see docs/providers.md.
"""

from labelloop.providers.base import (
    CollectResult,
    Job,
    LabelingProvider,
    LabelingTask,
    Progress,
    get_provider,
    job_key,
)

__all__ = [
    "CollectResult",
    "Job",
    "LabelingProvider",
    "LabelingTask",
    "Progress",
    "get_provider",
    "job_key",
]
