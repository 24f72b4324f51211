"""Item previews for the report: an embedded image thumbnail or a text snippet."""

from __future__ import annotations

import base64
import dataclasses
import io
import logging

from labelloop import storage
from labelloop.schemas import IMAGE_SUFFIXES, Item

log = logging.getLogger(__name__)

# Thumbnails larger than this (px, longest side) are shrunk before embedding.
THUMBNAIL_SIZE = 128
# Images at most this big are drawn enlarged with crisp pixels rather than blurred.
PIXELATED_BELOW = 64
SNIPPET_CHARS = 280
# Refuse to decode huge files just for a thumbnail.
MAX_IMAGE_BYTES = 20_000_000


@dataclasses.dataclass(frozen=True)
class Preview:
    """What the report shows for one item.

    Attributes:
        data_uri: `data:image/...;base64,...` for images, else "".
        pixelated: Whether the image is tiny and should be scaled up without smoothing.
        snippet: The start of the item's text, for text items.
        note: Why there is no preview, if there is none.
    """

    data_uri: str = ""
    pixelated: bool = False
    snippet: str = ""
    note: str = ""


def is_image_id(item_id: str) -> bool:
    """Whether an item id looks like an image file URI."""
    return item_id.lower().endswith(IMAGE_SUFFIXES)


def image_preview(uri: str) -> Preview:
    """Read an image and return it as an embedded PNG (JPEG for photos) thumbnail."""
    from PIL import Image, UnidentifiedImageError

    try:
        raw = storage.read_bytes(uri)
    except Exception as exc:  # any storage failure (GCS raises its own types): preview is optional
        log.warning("report: cannot read %s: %s", uri, exc)
        return Preview(note="image not readable")
    if len(raw) > MAX_IMAGE_BYTES:
        return Preview(note="image too large to preview")
    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.load()
            small = max(image.size) <= PIXELATED_BELOW
            photo = image.format == "JPEG"
            thumb = image.convert("RGB" if photo else "RGBA")
            thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        log.warning("report: cannot decode %s: %s", uri, exc)
        return Preview(note="image not decodable")
    buffer = io.BytesIO()
    if photo:
        thumb.save(buffer, format="JPEG", quality=80)
        mime = "image/jpeg"
    else:
        thumb.save(buffer, format="PNG", optimize=True)
        mime = "image/png"
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return Preview(data_uri=f"data:{mime};base64,{encoded}", pixelated=small)


def text_preview(text: str) -> Preview:
    """The first `SNIPPET_CHARS` characters of a text, whitespace collapsed."""
    flat = " ".join(text.split())
    if len(flat) > SNIPPET_CHARS:
        flat = flat[: SNIPPET_CHARS - 1].rstrip() + "…"
    return Preview(snippet=flat)


def preview(item_id: str, items: dict[str, Item]) -> Preview:
    """The preview of one item: inline text from the dataset, an image, or a text file's start."""
    item = items.get(item_id)
    if item is not None and item.text is not None:
        return text_preview(item.text)
    if item_id.startswith("text:"):
        return Preview(note="text not in the dataset artifact")
    if items and (item is None or not item.uri):
        # With a dataset, only its items (kept inside the source by selection) are read: an id
        # from a review or annotations file is never taken for a path to open. (Without one,
        # as from the command line on your own files, the id is the path.)
        return Preview(note="not an item of this round's dataset: not read")
    uri = item.uri if item is not None and item.uri else item_id
    if is_image_id(uri):
        return image_preview(uri)
    try:
        return text_preview(storage.read_bytes(uri)[: SNIPPET_CHARS * 4].decode("utf-8", "replace"))
    except Exception as exc:  # any storage failure: the preview is optional
        log.warning("report: cannot read %s: %s", uri, exc)
        return Preview(note="text not readable")
