"""The bundled sample data: scikit-learn's 8x8 digits written as PNG files.

The images go to `<cache>/digits/images/` (the source prefix the pipeline lists); the ground truth
goes to `<cache>/digits/truth.csv`, outside that prefix, so that only the simulated workforce and
the final evaluation can read it.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

SAMPLE_SCHEME = "sample://"
DIGIT_LABELS = tuple(str(d) for d in range(10))


@dataclasses.dataclass(frozen=True)
class SampleData:
    """Where a materialised sample lives."""

    source_uri: str
    truth_uri: str
    labels: tuple[str, ...]
    count: int


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/labelloop` or `~/.cache/labelloop` (read by entry points only)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "labelloop"


def materialize_digits(cache_dir: Path, *, limit: int | None = None) -> SampleData:
    """Write the digits as PNGs (once) and return their location.

    Args:
        cache_dir: Folder to write into; `digits/` is created below it.
        limit: Write only the first `limit` images (tests use small samples).

    Returns:
        The source prefix, the truth file and the label set.
    """
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    n = len(digits.target) if limit is None else min(limit, len(digits.target))
    name = "digits" if limit is None else f"digits-{n}"
    root = cache_dir / name
    images = root / "images"
    truth = root / "truth.csv"
    if truth.is_file() and images.is_dir() and len(list(images.glob("*.png"))) == n:
        return SampleData(str(images), str(truth), DIGIT_LABELS, n)
    images.mkdir(parents=True, exist_ok=True)
    pixels = (digits.images[:n] * (255.0 / 16.0)).round().astype(np.uint8)
    rows = []
    for i in range(n):
        path = images / f"digit-{i:05d}.png"
        Image.fromarray(pixels[i], mode="L").save(path)
        rows.append((str(path), str(int(digits.target[i]))))
    tmp = truth.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item", "label"])
        writer.writerows(rows)
    tmp.replace(truth)
    log.info("wrote %d sample digits to %s", n, images)
    return SampleData(str(images), str(truth), DIGIT_LABELS, n)


def resolve_sample(uri: str, cache_dir: Path) -> SampleData:
    """Materialise `sample://digits` (optionally `sample://digits?limit=N`)."""
    from labelloop.errors import InputError

    name, _, query = uri.removeprefix(SAMPLE_SCHEME).partition("?")
    if name != "digits":
        raise InputError(f"unknown sample {uri!r}; the bundled sample is sample://digits")
    limit = None
    if query.startswith("limit="):
        limit = int(query.removeprefix("limit="))
    return materialize_digits(cache_dir, limit=limit)


# Provider options a bundled sample fills in itself: its hidden truth drives the simulation.
SUPPLIED_OPTIONS: dict[str, tuple[str, ...]] = {"simulated": ("truth_uri",)}


def supplied_options(source_uri: str, provider: str) -> tuple[str, ...]:
    """The provider options a run on `source_uri` fills in (only `sample://` sources do)."""
    return SUPPLIED_OPTIONS.get(provider, ()) if source_uri.startswith(SAMPLE_SCHEME) else ()


def read_truth(uri: str) -> dict[str, str]:
    """Read a truth CSV (`item,label`) into a dict."""
    from labelloop import storage

    with storage.open_read(uri) as fh:
        return {row["item"]: row["label"] for row in csv.DictReader(fh)}
