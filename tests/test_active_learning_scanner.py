"""The compiled prediction-line scanner: the 64-byte-chunk reader equals the byte walker.

`scanner.scan` reads lines through quote/newline/backslash bit masks and hands any line it
cannot vouch for (escapes, an odd number of quotes, keys missing or repeated) to the byte
walker; with `spans` it walks every line. Both must give the same outputs on any input.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelloop.active_learning import scanner

FIELDS = ("line_start", "line_end", "status", "vstart", "vcount", "chash")


def _scan(
    data: bytes, *, walk: bool, pos: int = 0, end: int | None = None
) -> dict[str, np.ndarray]:
    raw = np.frombuffer(data, dtype=np.uint8)
    end = len(data) if end is None else end
    n = data.count(b"\n") + 2
    out = {
        "line_start": np.full(n, -9, dtype=np.int64),
        "line_end": np.full(n, -9, dtype=np.int64),
        "status": np.full(n, 9, dtype=np.uint8),
        "vstart": np.full(n, -9, dtype=np.int64),
        "vcount": np.full(n, -9, dtype=np.int64),
        "chash": np.zeros(n, dtype=np.uint64),
    }
    values = np.full(len(data) // 2 + 1, np.nan)
    stats = np.full((n, 4), np.nan)
    spans = np.zeros((n if walk else 0, 4), dtype=np.int64)
    lines, nv, stop = scanner.scan(
        raw, pos, end, values, scanner.Lines(*(out[f] for f in FIELDS), stats=stats, spans=spans)
    )
    result = {f: a[:lines] for f, a in out.items()}
    result["values"] = values[:nv]
    result["stats"] = stats[:lines]
    result["stop"] = np.array([stop])
    return result


def _assert_same(data: bytes, *, pos: int = 0, end: int | None = None) -> dict[str, np.ndarray]:
    chunks = _scan(data, walk=False, pos=pos, end=end)
    walked = _scan(data, walk=True, pos=pos, end=end)
    for field in (*FIELDS, "values", "stats", "stop"):
        np.testing.assert_array_equal(chunks[field], walked[field], err_msg=f"{field}: {data!r}")
    return chunks


KEYS = ['"content"', '"confidences"', '"displayNames"', '"cat"', '"x"', '"c"']
PIECES = [
    '{"instance": {"content": "gs://b/a.png"}, "prediction": {"confidences": [0.25, 0.75]}}',
    '{"instance": {"content": "confidences"}, "prediction": {"confidences": [1]}}',
    '{"instance": {"content": "content"}, "prediction": {"confidences": [0.5, 0.5]}}',
    '{"prediction": {"confidences": [1e-3, 0.999]}, "instance": {"content": "t"}}',
    '{"instance": {"content": "a\\"b"}, "prediction": {"confidences": [0.5, 0.5]}}',
    '{"instance": {"content": "ab"}, "note": "a\\\\", "prediction": {"confidences": [1.0]}}',
    '{"instance": {"content": "x"}, "prediction": {"displayNames": ["cat", "cow"], '
    '"confidences": [0.5, 0.5]}}',
    '{"instance": {"content": "x"}, "odd": "unterminated, "prediction": {"confidences": [1]}}',
    '{"instance": {"content": "x"}, "prediction": {"confidences": "content"}}',
    '{"instance": {"content": "x", "content": "y"}, "prediction": {"confidences": [1]}}',
    '{"instance": {"content": ""}, "prediction": {"confidences": [1]}}',
    '{"instance": {"content": "x"}, "prediction": {"confidences": []}}',
    '{"instance": {"content": "x"}, "prediction": {"confidences": [01, 0]}}',
    '{"instance": {"content": "x"}, "prediction": {"confidences": [0.30452949348101396, 1]}}',
    '{"instance": {"content": "x"}, "prediction": {"confidences": [1.5E+2, -0, 2e-400]}}',
    '{"instance": {"content": "x"}, "prediction": {"confidences": [0.5, 0.5]}}\r',
    "   ",
    "",
    "\t\r",
    "not json at all",
    '"content": "x", "confidences": [1]',
    '{"content"  :  "spaced" , "confidences" : [ 0.5 , 0.5 ] }',
    '{"confidences": [0.12345678901234, 0.87654321098766], "content": "z"}',
]


def _random_line(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(PIECES)
    # A random soup of the tokens that matter to the scanner.
    tokens = [
        *KEYS,
        ": ",
        ", ",
        "[",
        "]",
        "{",
        "}",
        '"',
        "\\",
        "\\\\",
        '\\"',
        "0.5",
        "1e-2",
        "-3",
        " ",
        "c",
        "\r",
        "é",
    ]
    return "".join(rng.choice(tokens) for _ in range(rng.randint(0, 40)))


def test_chunked_scan_equals_the_byte_walker_on_random_lines() -> None:
    rng = random.Random(20261127)
    for _ in range(300):
        lines = [_random_line(rng) for _ in range(rng.randint(1, 30))]
        data = "\n".join(lines).encode()
        if rng.random() < 0.7:
            data += b"\n"
        _assert_same(data)


@pytest.mark.parametrize("shift", range(0, 70, 3))
def test_lines_across_chunk_boundaries_at_every_offset(shift: int) -> None:
    line = json.dumps(
        {
            "instance": {"content": "gs://bucket/c" + "x" * shift},
            "prediction": {"displayNames": ["cat", "dog"], "confidences": [0.125, 0.875]},
        }
    )
    data = ("\n".join([line, " " * shift + line, "c" * shift, line]) + "\n").encode()
    out = _assert_same(data)
    third_status = scanner.SLOW if shift else scanner.BLANK
    assert out["status"].tolist() == [scanner.EXACT, scanner.EXACT, third_status, scanner.EXACT]
    # A part that starts at a line start inside a chunk and ends inside another.
    second = data.index(b"\n") + 1
    third = data.index(b"\n", second) + 1
    part = _assert_same(data, pos=second, end=third)
    assert part["line_start"].tolist() == [second]


def test_an_odd_line_does_not_shift_the_string_state_of_the_next() -> None:
    good = '{"instance": {"content": "gs://b/a.png"}, "prediction": {"confidences": [1]}}'
    data = (f'{{"a": "open\n{good}\n"\n{good}\n').encode()
    out = _assert_same(data)
    assert out["status"].tolist() == [scanner.SLOW, scanner.EXACT, scanner.SLOW, scanner.EXACT]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(PIECES),
            st.text(alphabet='"\\{}[],: c0.5e-\r\tnt', max_size=60),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_chunked_scan_equals_the_byte_walker_hypothesis(lines: list[str]) -> None:
    _assert_same(("\n".join(lines) + "\n").encode())


def test_warm_up_runs_every_selection_path() -> None:
    from labelloop.active_learning import strategies
    from labelloop.active_learning.predictions import warm_up

    assert warm_up() == len(strategies.STRATEGIES)
