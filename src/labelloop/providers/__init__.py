"""Labeling providers: who labels the items (a simulated workforce, Label Studio, Gemini, imports)."""

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
