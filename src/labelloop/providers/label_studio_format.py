"""Label Studio's task and annotation JSON: labeling configs, results, and reading exports.

Shared by the Label Studio provider (which reads its own project's export) and the import
provider (which reads an export file someone downloaded). Label Studio Community lets any
member post twice on a task or edit another member's annotation, so reading an export

* keeps one annotation per (task, annotator): the most recently updated, the others are reported;
* distrusts annotations edited by someone else (`updated_by` != `completed_by`): reported, not used;
* skips cancelled (skipped) annotations and counts them.

Boxes come in percent of the image; they are converted to normalised [0, 1] coordinates.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

from labelloop.errors import BadRecord
from labelloop.schemas import (
    Annotation,
    AnnotationValue,
    Box,
    Item,
    Shape,
    Span,
    TaskType,
    text_item_id,
)

FROM_NAME = "label"


def _attr(value: str) -> str:
    """A double-quoted, fully escaped XML attribute value."""
    return '"' + escape(value, {'"': "&quot;", "\n": "&#10;"}) + '"'


def data_key(task_type: TaskType) -> str:
    """The task data field Label Studio shows: `image` or `text`."""
    return "image" if task_type.is_image else "text"


TITLE_MAX = 50  # Label Studio's limit on project titles
KEY_IN_TITLE = (
    8  # characters of the job key at the end of a title (the full key is in the description)
)
GENERIC_FOLDERS = frozenset({"images", "image", "imgs", "img", "data", "files", "texts", "text"})


def project_title(dataset: str, round_number: int, day: str, key: str) -> str:
    """A title people can tell apart: `digits/images · round 2 · 2026-11-29 · 3f9a2c1b`.

    The dataset name is shortened to fit Label Studio's 50 characters; the job key's start
    stays at the end (the project is found by it, and the full key is in the description).
    """
    tail = f" · round {round_number} · {day} · {key[:KEY_IN_TITLE]}"
    room = TITLE_MAX - len(tail)
    name = dataset if len(dataset) <= room else dataset[: room - 1] + "…"
    return f"{name}{tail}"


def dataset_name(items: Sequence[Item]) -> str:
    """A short name for the items: their common folder (`digits/images`), or `text items`."""
    uris = [str(i.uri) for i in items if i.uri]
    if not uris:
        return "text items"
    folders = {u.rstrip("/").rsplit("/", 1)[0] for u in uris}
    common = os.path.commonpath([f.removeprefix("gs://") for f in folders]) if folders else ""
    parts = [p for p in common.split("/") if p]
    if not parts:
        return "items"
    if parts[-1].lower() in GENERIC_FOLDERS and len(parts) > 1:
        return "/".join(parts[-2:])
    return parts[-1]


# Keys handed out, in order, to labels that cannot use a character of their own. Letters Label
# Studio's image tools answer to (rectangle, brush, eraser, hand, ...) are left out.
RESERVED_KEYS = frozenset("rbehuvkm")
HOTKEY_POOL = "".join(c for c in "1234567890qwertyuiopasdfghjklzxcvbnm" if c not in RESERVED_KEYS)
# Images at most this many pixels on their longest side are shown enlarged without smoothing.
SMALL_IMAGE = 64
SMALL_IMAGE_WIDTH = "320px"


def hotkeys(labels: Sequence[str]) -> list[str]:
    """One distinct key per label: a label's own character when it is one letter or digit
    (so "3" is pressed for "3"), else a free letter or digit of the label, else the next free
    key; labels beyond the available keys get none ("").

    Label Studio numbers its choices 1, 2, 3 ... by position unless every choice names its
    hotkey: for the labels "0" to "9" that makes "3" pick "2".
    """
    used: set[str] = set()
    keys: list[str | None] = [None] * len(labels)
    # Labels that are a key themselves claim it first, wherever they sit in the list.
    for i, label in enumerate(labels):
        own = label.strip().lower()
        if len(own) == 1 and own.isascii() and own.isalnum() and own not in used | RESERVED_KEYS:
            keys[i] = own
            used.add(own)
    for i, label in enumerate(labels):
        if keys[i] is not None:
            continue
        candidates = [c for c in label.lower() if c.isascii() and c.isalnum()]
        candidates = [c for c in candidates if c not in RESERVED_KEYS] + list(HOTKEY_POOL)
        key = next((c for c in candidates if c not in used), "")
        keys[i] = key
        used.add(key)
    return [k or "" for k in keys]


def _options_with_keys(tag: str, labels: Sequence[str]) -> str:
    return "".join(
        f"<{tag} value={_attr(label)}" + (f" hotkey={_attr(key)}" if key else "") + "/>"
        for label, key in zip(labels, hotkeys(labels), strict=True)
    )


def labeling_config(
    task_type: TaskType,
    labels: Sequence[str],
    instructions: str = "",
    *,
    small_images: bool = False,
) -> str:
    """The `<View>` labeling config for a task type and label set, with the instructions on top.

    Single-label classification uses `Choices` (`choice="single"`, required), multi-label
    `Choices choice="multiple"`, object detection `RectangleLabels`, entity extraction `Labels`
    over the text. Every choice and label carries its own hotkey (see `hotkeys`). With
    `small_images`, images are drawn at a fixed, readable width without smoothing (an 8x8
    digit stays a crisp grid of pixels instead of a blur).
    """
    key = data_key(task_type)
    obj_tag = "Image" if task_type.is_image else "Text"
    extra = ""
    if task_type.is_image and small_images:
        extra = f' smoothing="false" width="{SMALL_IMAGE_WIDTH}" maxWidth="{SMALL_IMAGE_WIDTH}"'
    obj = f'<{obj_tag} name="{key}" value="${key}"{extra}/>'
    if task_type.is_classification:
        mode = "multiple" if task_type.multi_label else "single"
        control = (
            f'<Choices name="{FROM_NAME}" toName="{key}" choice="{mode}" required="true" '
            f'showInline="true">{_options_with_keys("Choice", labels)}</Choices>'
        )
    elif task_type.shape is Shape.BOXES:
        control = (
            f'<RectangleLabels name="{FROM_NAME}" toName="{key}">'
            f"{_options_with_keys('Label', labels)}</RectangleLabels>"
        )
    else:
        spans = _options_with_keys("Label", labels)
        control = f'<Labels name="{FROM_NAME}" toName="{key}">{spans}</Labels>'
    header = f"<Header value={_attr(instructions)}/>" if instructions else ""
    # Labels go above the text for NER (as in Label Studio's own template).
    body = f"{control}{obj}" if task_type.shape is Shape.SPANS else f"{obj}{control}"
    return f"<View>{header}{body}</View>"


def default_instructions(task_type: TaskType, labels: Sequence[str]) -> str:
    """What annotators read when the pipeline gives no instructions of its own."""
    keys = hotkeys(labels)
    listed = ", ".join(f"{label} (key {k})" for label, k in zip(labels, keys, strict=True) if k)
    what = "image" if task_type.is_image else "text"
    if task_type.is_classification:
        how = (
            f"Choose every label that applies to the {what}"
            if task_type.multi_label
            else f"Choose the one label that fits the {what} best"
        )
    elif task_type.shape is Shape.BOXES:
        how = "Pick a label, then draw a box tightly around every object of that kind"
    else:
        how = "Pick a label, then select every span of text that is an entity of that kind"
    return (
        f"{how}: {listed}. Submit with Ctrl+Enter. Skip an item only when it cannot be judged"
        " (skips are counted in the run report)."
    )


def instructions_html(instructions: str) -> str:
    """Instructions as the project's `expert_instruction` HTML (escaped, paragraphs kept)."""
    paragraphs = [p.strip() for p in instructions.split("\n\n") if p.strip()]
    return "".join(f"<p>{escape(p)}</p>" for p in paragraphs)


def to_result(
    task_type: TaskType, value: AnnotationValue, *, text: str = ""
) -> list[dict[str, Any]]:
    """An annotation value as Label Studio `result` regions (for predictions and tests)."""
    key = data_key(task_type)
    base = {"from_name": FROM_NAME, "to_name": key}
    if isinstance(value, str):
        return [{**base, "type": "choices", "value": {"choices": [value]}}]
    if isinstance(value, frozenset):
        return [{**base, "type": "choices", "value": {"choices": sorted(value)}}]
    out: list[dict[str, Any]] = []
    parts: tuple[Box | Span, ...] = value
    for i, part in enumerate(parts):
        region: dict[str, Any] = {**base, "id": f"r{i}"}
        if isinstance(part, Box):
            region["type"] = "rectanglelabels"
            region["value"] = {
                "x": part.x_min * 100.0,
                "y": part.y_min * 100.0,
                "width": (part.x_max - part.x_min) * 100.0,
                "height": (part.y_max - part.y_min) * 100.0,
                "rotation": 0,
                "rectanglelabels": [part.label],
            }
        else:
            region["type"] = "labels"
            region["value"] = {
                "start": part.start,
                "end": part.end,
                "text": text[part.start : part.end],
                "labels": [part.label],
            }
        out.append(region)
    return out


class ResultError(ValueError):
    """A result region that cannot be read as this task's answer."""


def _clip01(v: float) -> float:
    return min(1.0, max(0.0, v))


def from_result(
    task_type: TaskType, result: Sequence[Mapping[str, Any]], label_set: frozenset[str]
) -> AnnotationValue:
    """Read Label Studio `result` regions as an annotation value.

    Raises:
        ResultError: Empty answer, unknown label, or a region of the wrong kind.
    """

    def check(label: Any) -> str:
        if not isinstance(label, str) or label not in label_set:
            raise ResultError(f"unknown label {label!r} (not in the label set)")
        return label

    if task_type.is_classification:
        chosen: list[str] = []
        for region in result:
            if region.get("type") != "choices":
                continue
            chosen.extend(check(c) for c in region.get("value", {}).get("choices", []))
        if not chosen:
            raise ResultError("no choice selected")
        if task_type.multi_label:
            return frozenset(chosen)
        if len(set(chosen)) != 1:
            raise ResultError(f"several choices {sorted(set(chosen))} for a single-label task")
        return chosen[0]
    if task_type.shape is Shape.BOXES:
        boxes: list[Box] = []
        for region in result:
            if region.get("type") != "rectanglelabels":
                continue
            v = region.get("value", {})
            try:
                x, y = float(v["x"]), float(v["y"])
                w, h = float(v["width"]), float(v["height"])
            except (KeyError, TypeError, ValueError):
                raise ResultError("rectangle without numeric x, y, width, height") from None
            if v.get("rotation"):
                raise ResultError("rotated rectangles are not supported")
            names = v.get("rectanglelabels") or []
            if len(names) != 1:
                raise ResultError(f"a rectangle needs exactly one label, got {names}")
            box = Box(
                _clip01(x / 100.0),
                _clip01(y / 100.0),
                _clip01((x + w) / 100.0),
                _clip01((y + h) / 100.0),
                check(names[0]),
            )
            if box.x_min >= box.x_max or box.y_min >= box.y_max:
                raise ResultError("empty rectangle")
            boxes.append(box)
        return tuple(boxes)
    spans: list[Span] = []
    for region in result:
        if region.get("type") != "labels":
            continue
        v = region.get("value", {})
        try:
            start, end = int(v["start"]), int(v["end"])
        except (KeyError, TypeError, ValueError):
            raise ResultError("span without integer start and end") from None
        names = v.get("labels") or []
        if len(names) != 1 or not 0 <= start < end:
            raise ResultError(f"bad span [{start}, {end}) with labels {names}")
        spans.append(Span(start, end, check(names[0])))
    return tuple(spans)


def _user_id(value: Any) -> str | None:
    """`completed_by` / `updated_by`: an int id, or an object with `id`/`email` in some exports."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return str(value.get("id", value.get("email", "")))
    return str(value)


def item_id_of_task(task: Mapping[str, Any], task_type: TaskType) -> str | None:
    """Our item id for a task: the `item_id` we stored, else the image URI or text hash."""
    data = task.get("data") or {}
    if data.get("item_id"):
        return str(data["item_id"])
    value = data.get(data_key(task_type))
    if not isinstance(value, str) or not value:
        return None
    return value if task_type.is_image else text_item_id(value)


@dataclasses.dataclass(frozen=True)
class ExportRead:
    """Trusted annotations, rejected records, and cancelled (skipped) annotations."""

    annotations: list[Annotation]
    bad: list[BadRecord]
    skipped: int
    items: set[str]


def read_export(
    tasks: Sequence[Mapping[str, Any]],
    *,
    task_type: TaskType,
    labels: Sequence[str],
    source: str,
    annotator_name: Callable[[str], str] = str,
) -> ExportRead:
    """Read a Label Studio JSON export (a list of tasks with their annotations).

    Args:
        tasks: The export's task objects.
        task_type: How to read each result.
        labels: The label set; other labels are reported.
        source: Names the export in bad records (a file or `label_studio:project/ID`).
        annotator_name: Maps a Label Studio user id to our annotator id.

    Returns:
        One trusted annotation per (task, annotator); bad records carry the task's position in
        the export as `line` and the annotation id in the reason.
    """
    label_set = frozenset(labels)
    good: list[Annotation] = []
    bad: list[BadRecord] = []
    skipped = 0
    items: set[str] = set()
    for position, task in enumerate(tasks, start=1):
        item = item_id_of_task(task, task_type)
        if item is None:
            bad.append(BadRecord(source, position, "data", f"task {task.get('id')} has no item"))
            continue
        items.add(item)
        latest: dict[str, tuple[tuple[str, int], Annotation, int]] = {}
        for ann in task.get("annotations") or []:
            ann_id = int(ann.get("id") or 0)
            if ann.get("was_cancelled"):
                skipped += 1
                continue
            author = _user_id(ann.get("completed_by"))
            if author is None:
                bad.append(BadRecord(source, position, "completed_by", f"annotation {ann_id}"))
                continue
            editor = _user_id(ann.get("updated_by"))
            if editor is not None and editor != author:
                bad.append(
                    BadRecord(
                        source,
                        position,
                        "updated_by",
                        f"annotation {ann_id} by user {author} was edited by user {editor}: "
                        "not trusted",
                    )
                )
                continue
            try:
                value = from_result(task_type, ann.get("result") or [], label_set)
            except ResultError as exc:
                bad.append(BadRecord(source, position, "result", f"annotation {ann_id}: {exc}"))
                continue
            annotator = annotator_name(author)
            order = (str(ann.get("updated_at") or ann.get("created_at") or ""), ann_id)
            previous = latest.get(annotator)
            if previous is not None:
                older, newer = sorted(
                    [previous, (order, Annotation(item, annotator, value), ann_id)]
                )
                bad.append(
                    BadRecord(
                        source,
                        position,
                        "completed_by",
                        f"user {author} annotated task {task.get('id')} twice: kept annotation "
                        f"{newer[2]}, dropped {older[2]}",
                    )
                )
                latest[annotator] = newer
            else:
                latest[annotator] = (order, Annotation(item, annotator, value), ann_id)
        good.extend(entry[1] for entry in latest.values())
    return ExportRead(good, bad, skipped, items)


def task_data(item: Item, task_type: TaskType, *, image_url: str | None, text: str | None) -> dict:
    """The `data` of a Label Studio task for one item (our id travels in `item_id`)."""
    data: dict[str, Any] = {"item_id": item.id}
    if task_type.is_image:
        data["image"] = image_url
    else:
        data["text"] = text
    return data


def answer_times(
    tasks: list[dict[str, Any]], names: Mapping[str, str], task_type: TaskType
) -> tuple[dict[str, dict[str, float]], dict[tuple[str, str], float]]:
    """From an export: per annotator, answers, skips and seconds (Label Studio's `lead_time`);
    and the seconds of each answer by (item, annotator), for pricing people by the hour."""
    people: dict[str, dict[str, float]] = {}
    seconds: dict[tuple[str, str], float] = {}
    for task in tasks:
        item = item_id_of_task(task, task_type)
        for ann in task.get("annotations") or []:
            author = ann.get("completed_by", "")
            uid = str(author.get("id", "") if isinstance(author, dict) else author)
            name = names.get(uid, f"ls-user-{uid}")
            row = people.setdefault(name, {"answers": 0, "skipped": 0, "seconds": 0.0})
            row["skipped" if ann.get("was_cancelled") else "answers"] += 1
            lead = ann.get("lead_time")
            if isinstance(lead, int | float) and lead >= 0:
                row["seconds"] += float(lead)
                if item is not None and not ann.get("was_cancelled"):
                    seconds[(item, name)] = seconds.get((item, name), 0.0) + float(lead)
    return {k: people[k] for k in sorted(people)}, seconds
