"""Task types, Vertex import records and the long-format annotation table.

Annotations are long format, one row per (item, annotator), as in crowd-kit: `item`, `annotator`
and a value whose shape depends on the task (a label, a set of labels, boxes or spans).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

VERTEX_SCHEMA_BASE = "gs://google-cloud-aiplatform/schema/dataset/ioformat"
ML_USE_KEY = "aiplatform.googleapis.com/ml_use"
#: Resource label of an item sent back for more answers: how many times it was asked before.
ATTEMPT_KEY = "labelloop_attempt"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ico")
TEXT_SUFFIXES = (".txt",)


class Modality(enum.StrEnum):
    """What an item is: decides file suffixes, import records and features."""

    IMAGE = "image"
    TEXT = "text"


class Shape(enum.StrEnum):
    """The shape of one annotator's answer. Formats, providers, metrics and trainers dispatch on
    it, never on a task type's name."""

    SINGLE = "single"  # one label: str
    MULTI = "multi"  # a set of labels: frozenset[str]
    BOXES = "boxes"  # bounding boxes: tuple[Box, ...]
    SPANS = "spans"  # character spans: tuple[Span, ...]


class TaskType(enum.StrEnum):
    """What is being labeled: the one registry of task types.

    Each member is one line: its name, its modality, its annotation shape and its Vertex AI
    import schema. Everything else (import records, annotation formats, Label Studio configs,
    the simulated workforce, consolidation and agreement, Vertex training branches) follows
    from the modality and the shape, so a task type with an existing shape is one line here.
    """

    modality: Modality
    shape: Shape
    vertex_schema: str

    def __new__(cls, value: str, *traits: Any) -> TaskType:
        # Runs once per member, at class creation; `TaskType("...")` later looks members up.
        member = str.__new__(cls, value)
        member._value_ = value
        member.modality, member.shape, member.vertex_schema = traits
        return member

    IMAGE_CLASSIFICATION = (
        "image_classification",
        Modality.IMAGE,
        Shape.SINGLE,
        "image_classification_single_label_io_format_1.0.0.yaml",
    )
    IMAGE_MULTILABEL_CLASSIFICATION = (
        "image_multilabel_classification",
        Modality.IMAGE,
        Shape.MULTI,
        "image_classification_multi_label_io_format_1.0.0.yaml",
    )
    IMAGE_OBJECT_DETECTION = (
        "image_object_detection",
        Modality.IMAGE,
        Shape.BOXES,
        "image_bounding_box_io_format_1.0.0.yaml",
    )
    TEXT_CLASSIFICATION = (
        "text_classification",
        Modality.TEXT,
        Shape.SINGLE,
        "text_classification_single_label_io_format_1.0.0.yaml",
    )
    TEXT_ENTITY_EXTRACTION = (
        "text_entity_extraction",
        Modality.TEXT,
        Shape.SPANS,
        "text_extraction_io_format_1.0.0.yaml",
    )

    @classmethod
    def parse(cls, value: str, *, field: str = "task_type") -> TaskType:
        """Parse a task type, with an error that lists the valid ones."""
        from labelloop.errors import InputError

        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(t.value for t in cls)
            raise InputError(
                f"unknown task type {value!r}; expected one of {valid}", field=field
            ) from None

    @classmethod
    def of(cls, modality: Modality, shape: Shape) -> TaskType:
        """The task type with this modality and shape; ValueError if there is none."""
        for task in cls:
            if task.modality is modality and task.shape is shape:
                return task
        raise ValueError(f"no {modality} task type with {shape} annotations")

    @property
    def is_image(self) -> bool:
        return self.modality is Modality.IMAGE

    @property
    def is_text(self) -> bool:
        return self.modality is Modality.TEXT

    @property
    def is_classification(self) -> bool:
        return self.shape in (Shape.SINGLE, Shape.MULTI)

    @property
    def multi_label(self) -> bool:
        return self.shape is Shape.MULTI

    @property
    def file_suffixes(self) -> tuple[str, ...]:
        return IMAGE_SUFFIXES if self.is_image else TEXT_SUFFIXES

    @property
    def import_schema_uri(self) -> str:
        """The Vertex AI import schema for this task type."""
        return f"{VERTEX_SCHEMA_BASE}/{self.vertex_schema}"


def parse_labels(value: str | list[str] | tuple[str, ...], *, field: str = "labels") -> list[str]:
    """Parse a label set from a comma-separated string or a list; reject empties and repeats."""
    from labelloop.errors import InputError

    raw = value.split(",") if isinstance(value, str) else list(value)
    labels = [str(v).strip() for v in raw if str(v).strip()]
    if not labels:
        raise InputError("the label set is empty", field=field)
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            raise InputError(f"label {label!r} is listed twice", field=field)
        seen.add(label)
    return labels


def text_item_id(text: str) -> str:
    """A stable id for an inline text item (Vertex import records carry no id of their own)."""
    return "text:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def ml_use_for(
    item_id: str, *, validation_fraction: float = 0.1, test_fraction: float = 0.1
) -> str:
    """Deterministic Vertex `ml_use` split from a hash of the item id (stable across rounds)."""
    bucket = int(hashlib.sha256(item_id.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + validation_fraction:
        return "validation"
    return "training"


@dataclasses.dataclass(frozen=True, slots=True)
class Item:
    """One unlabeled data item: an image or text file URI, or inline text."""

    id: str
    uri: str | None = None
    text: str | None = None
    ml_use: str = "training"
    #: 0 for a first request; n when the item goes back to labeling for the n-th more time
    #: (providers may use it to ask other people, see `labelloop.relabel`).
    attempt: int = 0

    def to_import_record(self, task_type: TaskType) -> dict[str, Any]:
        """The Vertex AI import JSONL record (no annotation: the item is still unlabeled)."""
        record: dict[str, Any]
        if task_type.is_image:
            record = {"imageGcsUri": self.uri}
        elif self.uri is not None:
            record = {"textGcsUri": self.uri}
        else:
            record = {"textContent": self.text}
        record["dataItemResourceLabels"] = {ML_USE_KEY: self.ml_use}
        if self.attempt:
            record["dataItemResourceLabels"][ATTEMPT_KEY] = str(self.attempt)
        return record

    @classmethod
    def from_import_record(cls, record: dict[str, Any]) -> Item:
        """Inverse of `to_import_record`; raises KeyError/TypeError on a malformed record."""
        resource = record.get("dataItemResourceLabels", {})
        ml_use = resource.get(ML_USE_KEY, "training")
        attempt = int(resource.get(ATTEMPT_KEY, 0))
        if "imageGcsUri" in record:
            uri = str(record["imageGcsUri"])
            return cls(id=uri, uri=uri, ml_use=ml_use, attempt=attempt)
        if "textGcsUri" in record:
            uri = str(record["textGcsUri"])
            return cls(id=uri, uri=uri, ml_use=ml_use, attempt=attempt)
        text = record["textContent"]
        if not isinstance(text, str):
            raise TypeError("textContent must be a string")
        return cls(id=text_item_id(text), text=text, ml_use=ml_use, attempt=attempt)


@dataclasses.dataclass(frozen=True, slots=True)
class Box:
    """A bounding box in normalised [0, 1] image coordinates."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float
    label: str


@dataclasses.dataclass(frozen=True, slots=True)
class Span:
    """A labeled character span `[start, end)` of a text item."""

    start: int
    end: int
    label: str


AnnotationValue = str | frozenset[str] | tuple[Box, ...] | tuple[Span, ...]


class AnnotatorKind(enum.StrEnum):
    """Who gave an answer, carried with every annotation (`annotator_kind`).

    `human`: a labeler (their agreement is what the gate measures); `model`: a model's answer
    (Gemini's auto-accepted label; judged by its calibration, never counted as agreement);
    `expert`: a reviewer's correction (trusted: it decides its item, like gold).
    """

    HUMAN = "human"
    MODEL = "model"
    EXPERT = "expert"


#: Annotator-name prefixes that marked model answers before `annotator_kind` existed.
LEGACY_MODEL_PREFIXES = ("gemini:", "model:")


def legacy_annotator_kind(annotator: str) -> AnnotatorKind:
    """The kind of an answer from a file written before `annotator_kind`: by the name prefix.

    The only place a name decides the kind; readers count the rows it decided (a fallback).
    """
    return (
        AnnotatorKind.MODEL if annotator.startswith(LEGACY_MODEL_PREFIXES) else AnnotatorKind.HUMAN
    )


def annotator_kind_of(row: Mapping[str, Any]) -> AnnotatorKind:
    """The kind of a stored annotation row (annotations file, ledger): its `annotator_kind`,
    or, in rows written before the field existed, `legacy_annotator_kind` of its annotator."""
    value = row.get("annotator_kind")
    if isinstance(value, str) and value in set(AnnotatorKind):
        return AnnotatorKind(value)
    return legacy_annotator_kind(str(row.get("annotator", "")))


def gemini_annotator(model: str) -> str:
    """The annotator id of a Gemini model's answers (`gemini:<model>`): a name only; whether an
    answer is a model's is its `annotator_kind`."""
    return f"gemini:{model}"


@dataclasses.dataclass(frozen=True, slots=True)
class Annotation:
    """One annotator's answer for one item: the long format's row.

    `annotator_kind` says whether a person, a model or a reviewer gave it (`AnnotatorKind`).
    """

    item: str
    annotator: str
    value: AnnotationValue
    annotator_kind: AnnotatorKind = AnnotatorKind.HUMAN

    @property
    def is_model(self) -> bool:
        return self.annotator_kind is AnnotatorKind.MODEL

    def to_json(self, task_type: TaskType) -> dict[str, Any]:
        """JSONL row: `label` (str), `labels` (list), `boxes` or `spans` (lists of objects),
        with `annotator_kind`."""
        row: dict[str, Any] = {
            "item": self.item,
            "annotator": self.annotator,
            "annotator_kind": self.annotator_kind.value,
        }
        value = self.value
        if isinstance(value, str):
            row["label"] = value
        elif isinstance(value, frozenset):
            row["labels"] = sorted(value)
        elif task_type.shape is Shape.BOXES:
            row["boxes"] = [dataclasses.asdict(b) for b in value]
        else:
            row["spans"] = [dataclasses.asdict(s) for s in value]
        return row


@dataclasses.dataclass(frozen=True)
class Encoded:
    """Annotations as parallel int arrays plus the id tables they index into.

    Made by the readers (`annotations`) and `quality.encode`, consumed by the quality engine: it
    lives here, below both, so a reader never imports the quality package that reads it.
    """

    # (n_items,) / (n_annotators,) ids, sorted: a numpy array, or an Arrow string array when
    # read by the columnar engine (no Python object per id).
    items: Any
    annotators: Any
    labels: tuple[str, ...]  # the label set, in the caller's order
    item: np.ndarray  # (n,) int64 index into items
    annotator: np.ndarray  # (n,) int64 index into annotators
    label: np.ndarray  # (n,) int64 index into labels

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_annotators(self) -> int:
        return len(self.annotators)

    @property
    def n_labels(self) -> int:
        return len(self.labels)
