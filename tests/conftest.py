"""Shared fixtures. The repository root is importable (components/, pipelines/)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Task names of the portable pipeline's stages, in DAG order (training and report included).
STAGE_TASKS = (
    "generate-import-file",
    "select-for-labeling",
    "create-dataset",
    "run-labeling-job",
    "quality-gate",
    "train-model",
    "write-report",
)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def digits_sample(tmp_path_factory: pytest.TempPathFactory):
    """The first 400 sample digits as PNGs, with the truth file apart."""
    from labelloop.sample_data import materialize_digits

    return materialize_digits(tmp_path_factory.mktemp("cache"), limit=400)
