"""Labeling providers: who labels the items.

A simulated workforce, Label Studio (own team), Gemini (auto-labeling, routed to people below a
calibrated threshold) and imports of annotations made elsewhere; see docs/providers.md. Each
provider module registers its class and options schema with `registry.register`; importing
this package imports them all, so `get_provider` and config validation see every one.
"""

from labelloop.providers import gemini, importer, label_studio, routing, simulated
from labelloop.providers.base import (
    CollectResult,
    Job,
    LabelingProvider,
    LabelingTask,
    Progress,
    job_key,
)
from labelloop.providers.registry import (
    JobOptions,
    check_options,
    get_provider,
    provider_names,
    register,
)

BUNDLED = (simulated, importer, label_studio, gemini, routing)

__all__ = [
    "BUNDLED",
    "CollectResult",
    "Job",
    "JobOptions",
    "LabelingProvider",
    "LabelingTask",
    "Progress",
    "check_options",
    "get_provider",
    "job_key",
    "provider_names",
    "register",
]
