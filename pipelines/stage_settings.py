"""Per-stage machine size, retries and caching: one place, applied to tasks by component name.

A pipeline function calls `configure_stages(...)` as its last line; it walks every task the
pipeline created so far (gates and branches included) and applies:

* CPU / memory limits from `vertex.resources` (`ResourceSettings`; Vertex AI picks a machine
  that fits, Kubeflow Pipelines sets the pod's limits). Selection and the quality gate get
  sized defaults: they read every prediction or annotation row of the round.
* `set_retry` with exponential backoff on our stages that call external services (Cloud
  Storage, Label Studio, Gemini, Vertex AI). A retry is safe: provider jobs are keyed by their
  items (a retried labeling step finds its job instead of creating one) and every output is
  written whole. GCPC ops are not retried here: their launchers resume their own jobs.
* Caching: only `CACHEABLE` stages may be cached; they are pure functions of their inputs.
  Every other stage reads or writes something outside its inputs (the source bucket, the
  loop's state folder, a labeling provider, a Vertex resource), so a cached result would be
  stale or skip a write: those are compiled with caching off, and `enable_caching: true` on a
  run only turns on the cacheable ones.
"""

from __future__ import annotations

from typing import Any

from labelloop.vertex_config import ResourceSettings

# Pure functions of their inputs: the same inputs give the same outputs, nothing else is touched.
CACHEABLE = frozenset(
    {
        "vertex-task-plan",
        "no-predictions",
        "artifact-uri",
        "join-outcome",
        "record-gate-decision",
        "batch-predict-instances",
    }
)
# Retry policy of the stages that call external services (our image only).
RETRY_BACKOFF = "30s"
RETRY_BACKOFF_FACTOR = 2.0
RETRY_BACKOFF_MAX = "600s"


def _tasks() -> list[Any]:
    from kfp.dsl import pipeline_context

    pipeline = pipeline_context.Pipeline.get_default_pipeline()
    if pipeline is None:
        raise RuntimeError("configure_stages() must be called inside a pipeline function")
    return list(pipeline.tasks.values())


def _runs_our_image(task: Any) -> bool:
    from components import IMAGE

    container = getattr(task.component_spec.implementation, "container", None)
    return container is not None and container.image == IMAGE


def configure_stages(resources: ResourceSettings | None = None, *, retries: int = 2) -> None:
    """Apply resources, retries and caching to every task of the pipeline being defined.

    Args:
        resources: CPU / memory per stage (defaults: `ResourceSettings()`).
        retries: Retries of the stages that call external services (0 = none).
    """
    settings = resources or ResourceSettings()
    for task in _tasks():
        name = task.component_spec.name
        task.set_caching_options(name in CACHEABLE)
        if not _runs_our_image(task):
            continue
        size = settings.for_stage(name.replace("-", "_"))
        if size.cpu:
            task.set_cpu_limit(size.cpu)
        if size.memory:
            task.set_memory_limit(size.memory)
        if retries and name not in CACHEABLE:
            task.set_retry(
                num_retries=retries,
                backoff_duration=RETRY_BACKOFF,
                backoff_factor=RETRY_BACKOFF_FACTOR,
                backoff_max_duration=RETRY_BACKOFF_MAX,
            )
