"""The import-file / item-list reader: property-based, like the annotation readers' tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelloop.errors import InputError
from labelloop.items import RESOURCE_FIELD as RESOURCE
from labelloop.items import read_import_file
from labelloop.schemas import ATTEMPT_KEY, ML_USE_KEY, Item, TaskType

_NAME = st.text(alphabet=st.sampled_from([*"ab c/é\"'\\,\t{}"]), min_size=1, max_size=8).filter(
    lambda s: s.strip()
)
_ITEM = st.one_of(
    st.builds(
        lambda n, use: Item(id=f"gs://b/{n}", uri=f"gs://b/{n}", ml_use=use),
        _NAME,
        st.sampled_from(["training", "validation", "test"]),
    ),
    st.builds(
        lambda n, attempt: Item(id="", text=n, attempt=attempt),
        _NAME,
        st.integers(0, 3),
    ),
)
#: Lines that are not items, each with the field a reader must name ("*": the whole line).
_BAD = st.sampled_from(
    [
        ("{oops", "*"),
        ("[1, 2]", "*"),
        ('"just a string"', "*"),
        ('{"other": 1}', "*"),
        ('{"imageGcsUri": 5}', "imageGcsUri"),
        ('{"imageGcsUri": "  "}', "imageGcsUri"),
        ('{"textContent": ["a"]}', "textContent"),
        ('{"textGcsUri": "gs://b/t.txt", "dataItemResourceLabels": "x"}', RESOURCE),
        (
            json.dumps({"imageGcsUri": "gs://b/x.png", RESOURCE: {ATTEMPT_KEY: "many"}}),
            f"{RESOURCE}.{ATTEMPT_KEY}",
        ),
        (
            json.dumps({"imageGcsUri": "gs://b/y.png", RESOURCE: {ML_USE_KEY: 3}}),
            f"{RESOURCE}.{ML_USE_KEY}",
        ),
    ]
)


def _record(item: Item) -> dict[str, object]:
    task = TaskType.IMAGE_CLASSIFICATION if item.uri else TaskType.TEXT_CLASSIFICATION
    return item.to_import_record(task)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(st.one_of(_ITEM, _BAD, st.just("")), max_size=14),
    compressed=st.booleans(),
)
def test_import_reader_never_crashes_never_drops_and_names_line_and_field(
    tmp_path: Path, lines: list[Item | tuple[str, str] | str], compressed: bool
) -> None:
    path = tmp_path / ("items.jsonl.gz" if compressed else "items.jsonl")
    text, want_items, want_bad = [], [], {}
    for number, entry in enumerate(lines, start=1):
        if isinstance(entry, Item):
            text.append(json.dumps(_record(entry)))
            want_items.append(Item.from_import_record(_record(entry)))
        elif isinstance(entry, tuple):
            text.append(entry[0])
            want_bad[number] = entry[1]
        else:
            text.append(entry)  # a blank line: nothing on it, nothing to report
    data = ("\n".join(text) + "\n").encode()
    path.write_bytes(gzip.compress(data) if compressed else data)
    items, bad = read_import_file(str(path))  # never a traceback, whatever the lines hold
    assert items == want_items
    assert {b.line: b.field for b in bad} == want_bad
    assert all(b.source == str(path) and b.reason for b in bad)


def test_an_item_list_round_trips_and_a_missing_file_is_refused(tmp_path: Path) -> None:
    items = [
        Item(id="gs://b/a.png", uri="gs://b/a.png", ml_use="test"),
        Item(id="gs://b/b.png", uri="gs://b/b.png", attempt=2),
    ]
    path = tmp_path / "list.jsonl"
    path.write_text("".join(json.dumps(_record(i)) + "\n" for i in items))
    assert read_import_file(str(path)) == (items, [])
    with pytest.raises(InputError, match="does not exist"):
        read_import_file(str(tmp_path / "absent.jsonl"))
