"""Turn items into feature matrices for the local model (images: pixels; text: hashed n-grams)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from labelloop import storage
from labelloop.schemas import Item, TaskType

IMAGE_SIDE = 8
TEXT_FEATURES = 2**16


def image_features(items: Sequence[Item], *, side: int = IMAGE_SIDE) -> np.ndarray:
    """Grayscale pixels resized to `side` x `side`, scaled to [0, 1]: shape (n, side*side)."""
    from PIL import Image

    out = np.empty((len(items), side * side), dtype=np.float32)
    for i, item in enumerate(items):
        if item.uri is None:
            raise ValueError(f"image item {item.id} has no URI")
        with Image.open(io.BytesIO(storage.read_bytes(item.uri))) as img:
            gray = img.convert("L")
            if gray.size != (side, side):
                gray = gray.resize((side, side), Image.Resampling.BILINEAR)
            out[i] = np.asarray(gray, dtype=np.float32).reshape(-1) / 255.0
    return out


def item_text(item: Item) -> str:
    """The text of a text item, inline or read from its URI."""
    if item.text is not None:
        return item.text
    if item.uri is None:
        raise ValueError(f"text item {item.id} has neither text nor URI")
    return storage.read_text(item.uri)


def text_features(items: Sequence[Item]) -> object:
    """Hashed word 1-2 grams (stateless, so scoring needs no fitted vocabulary)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(
        n_features=TEXT_FEATURES, ngram_range=(1, 2), alternate_sign=False, norm="l2"
    )
    return vectorizer.transform([item_text(i) for i in items])


def featurize(items: Sequence[Item], task_type: TaskType) -> object:
    """Features for `items` (a dense array for images, a sparse matrix for text)."""
    if task_type.is_image:
        return image_features(items)
    return text_features(items)
