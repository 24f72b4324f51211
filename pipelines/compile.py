"""Compile the pipelines to `compiled/`, optionally pinning the component image."""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfp import compiler

from components import IMAGE

log = logging.getLogger(__name__)


def pipelines() -> dict[str, Callable[..., Any]]:
    """Every pipeline we compile, by output file stem."""
    from pipelines.labeling_pipeline import labeling_pipeline

    found: dict[str, Callable[..., Any]] = {"labeling_pipeline": labeling_pipeline}
    try:
        from pipelines.vertex_pipeline import vertex_labeling_pipeline
    except ImportError:
        return found
    found["vertex_labeling_pipeline"] = vertex_labeling_pipeline
    return found


def set_image(spec: dict[str, Any], image: str) -> int:
    """Point every executor that runs our image at `image`; return how many changed.

    The components are declared with the version-tagged image; CI compiles with the digest it
    just built, so a template always runs exactly the image it was tested with. Besides the
    executors' containers this covers the worker pools that
    `create_custom_training_job_from_component` bakes into its `worker_pool_specs` default.
    """
    changed = 0
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    for executor in executors.values():
        container = executor.get("container")
        if container and container.get("image") == IMAGE:
            container["image"] = image
            changed += 1
    for component in spec.get("components", {}).values():
        parameters = component.get("inputDefinitions", {}).get("parameters", {})
        for pool in parameters.get("worker_pool_specs", {}).get("defaultValue") or []:
            pool_container = pool.get("container_spec", {})
            if pool_container.get("image_uri") == IMAGE:
                pool_container["image_uri"] = image
                changed += 1
    return changed


def compile_pipeline(func: Callable[..., Any], out_path: Path, *, image: str | None = None) -> Path:
    """Compile one pipeline to JSON (stable key order, trailing newline)."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "pipeline.json"
        with warnings.catch_warnings():
            # kfp prefers YAML; Vertex and the registry accept both, and JSON is what we ship.
            warnings.simplefilter("ignore", DeprecationWarning)
            compiler.Compiler().compile(func, str(raw))
        spec = json.loads(raw.read_text(encoding="utf-8"))
    if image:
        set_image(spec, image)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out_path


def compile_all(out_dir: Path, *, image: str | None = None) -> list[Path]:
    """Compile every pipeline into `out_dir`, plus `image.json`: the image they expect."""
    from pipelines.image import manifest

    written = []
    for stem, func in pipelines().items():
        path = compile_pipeline(func, out_dir / f"{stem}.json", image=image)
        log.info("compiled %s", path)
        written.append(path)
    expected = manifest()
    if image:
        expected.update(placeholder=image, resolved_by="pinned at compile time (--image)")
    path = out_dir / "image.json"
    path.write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written.append(path)
    return written
