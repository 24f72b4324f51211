"""Property tests of the prediction reader: any file, no traceback, no silent drop.

Lines are built from the Vertex shape with the mistakes users' files have (strings and booleans
for numbers, NaN, wrong lengths, names outside the labels, cut lines, blank lines, repeats).
Every non-blank line must end up in the pool, excluded, or a bad record naming its file, line
and field, and the engine must agree line by line with the exact reader (`parse_line`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelloop.active_learning.predictions import parse_line, select_from_predictions
from labelloop.errors import InputError

LABELS = ["cat", "dog", "owl"]

numbers = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 1e-7, 0.333333])
# What a confidence slot may hold in a user's file (JSON text, spliced in as is).
confidence = st.one_of(
    numbers.map(repr),
    st.sampled_from(['"0.5"', "true", "false", "null", "NaN", "-0.25", "1e400", "[0.5]", "{}"]),
)


@st.composite
def prediction_line(draw: st.DrawFn) -> str:
    """One line: mostly valid, sometimes wrong in one or more ways."""
    width = draw(st.integers(1, 4))
    if draw(st.booleans()):  # a valid distribution
        raw = [draw(st.floats(0.01, 1.0)) for _ in range(width)]
        values = [repr(v / sum(raw)) for v in raw]
    else:
        values = [draw(confidence) for _ in range(width)]
    item = draw(st.sampled_from(["gs://b/a.png", "gs://b/b.png", "gs://b/c d.png", "", "é", 'x"y']))
    fields = [f'"confidences": [{", ".join(values)}]']
    names = draw(st.sampled_from([None, LABELS, ["cat", "elk", "owl"], ["cat"], "x"]))
    if names is not None:
        fields.append(
            f'"displayNames": {json.dumps(names[:width] if draw(st.booleans()) else names)}'
        )
    if draw(st.booleans()):
        fields.append(f'"ids": {json.dumps([str(i) for i in range(draw(st.integers(0, 4)))])}')
    instance = draw(
        st.sampled_from(['{"content": %s}', "%s", '{"mimeType": "image/png", "content": %s}'])
    ) % json.dumps(item, ensure_ascii=False)
    line = f'{{"instance": {instance}, "prediction": {{{", ".join(fields)}}}}}'
    cut = draw(st.sampled_from([None, None, None, 10, -3]))
    return line if cut is None else line[:cut]


files = st.lists(
    st.one_of(prediction_line(), st.sampled_from(["", "   ", "[1, 2]", "null"])), max_size=12
)


def _non_blank(lines: list[str]) -> dict[int, str]:
    return {n: text for n, text in enumerate(lines, start=1) if text.strip()}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=files, strategy=st.sampled_from(["margin", "random", "cluster_margin"]))
def test_every_line_is_used_or_a_bad_record_with_file_line_field(
    tmp_path: Path, lines: list[str], strategy: str
) -> None:
    path = tmp_path / "pred.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records = _non_blank(lines)
    usable = []
    for text in records.values():
        try:
            usable.append(parse_line(text, labels=LABELS))
        except ValueError:
            continue
    if records and not usable:  # every line bad: one clear error, nothing selected
        with pytest.raises(InputError, match="no valid predictions"):
            select_from_predictions(str(path), 3, strategy=strategy, labels=LABELS)
        return
    out = select_from_predictions(str(path), 3, strategy=strategy, labels=LABELS)
    assert out.pool + out.excluded + out.bad_records == len(records)
    assert len(out.bad) == out.bad_records
    seen: set[str] = set()
    expected = {}
    for number, text in records.items():
        try:
            content, _, _ = parse_line(text, labels=LABELS)
        except ValueError as exc:
            expected[number] = str(exc).partition(": ")[0]
            continue
        if content in seen:
            expected[number] = "instance.content"
        seen.add(content)
    assert {(b.line, b.field) for b in out.bad} == set(expected.items())
    for b in out.bad:
        assert b.source == str(path)
        assert b.reason
    assert len(out.items) == min(3, out.pool)
