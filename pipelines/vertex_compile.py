"""Compile the Vertex AI pipeline with the config's training settings and a pinned image."""

from __future__ import annotations

from pathlib import Path

from labelloop.vertex_config import ResourceSettings, TrainingSettings
from pipelines.compile import compile_pipeline


def compile_vertex_template(
    out_path: Path,
    *,
    training: TrainingSettings | None = None,
    resources: ResourceSettings | None = None,
    retries: int = 2,
    image: str | None = None,
) -> Path:
    """Validate the settings, compile the Vertex pipeline to `out_path`, pin `image` if given.

    Needs no environment: no credentials, no network.

    Raises:
        ConfigError: A training setting the service would reject.
    """
    from pipelines.vertex_pipeline import build_vertex_pipeline

    return compile_pipeline(
        build_vertex_pipeline(training, resources, retries=retries), out_path, image=image
    )
