"""Compile the Vertex AI pipeline with the config's training settings and a pinned image."""

from __future__ import annotations

from pathlib import Path

from labelloop.vertex_config import TrainingSettings
from pipelines.compile import compile_pipeline


def compile_vertex_template(
    out_path: Path, *, training: TrainingSettings | None = None, image: str | None = None
) -> Path:
    """Validate `training`, compile the Vertex pipeline to `out_path`, pin `image` if given.

    Needs no environment: no credentials, no network.

    Raises:
        ConfigError: A training setting the service would reject.
    """
    from pipelines.vertex_pipeline import build_vertex_pipeline

    return compile_pipeline(build_vertex_pipeline(training), out_path, image=image)
