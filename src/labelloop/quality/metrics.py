"""Every agreement metric: imports the modules that register them, then reads the registry.

Config validation and the quality step ask here (not `quality.registry`, which only holds the
entries), so every registering module is loaded first.
"""

from __future__ import annotations

from labelloop.quality import agreement, region_tasks
from labelloop.quality.registry import METRICS, AgreementMetric, get_metric, metrics_for

# The modules above register their metrics on import.
REGISTERING_MODULES = (agreement, region_tasks)

__all__ = ["AgreementMetric", "get_metric", "metric_names", "metrics_for"]


def metric_names() -> list[str]:
    """Every registered metric name, in registration order."""
    return list(METRICS)
