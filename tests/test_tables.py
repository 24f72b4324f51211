"""The columnar data path: formats, compression, encodings, strict values, atomic writes."""

from __future__ import annotations

import bz2
import gzip
import json
import os
import stat
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelloop import tables
from labelloop.annotations import read_annotations, read_gold, read_label_table
from labelloop.cli import main
from labelloop.errors import InputError
from labelloop.schemas import TaskType

ROWS = "item,annotator,label\ni1,a,cat\ni1,b,dog\ni2,a,cat\n"


def _codes(path: Path) -> list[tuple[str, str, str]]:
    enc = read_label_table(str(path)).encoded
    items, annotators = enc.items.to_pylist(), enc.annotators.to_pylist()
    return sorted(
        (items[i], annotators[a], enc.labels[k])
        for i, a, k in zip(enc.item, enc.annotator, enc.label, strict=True)
    )


EXPECTED = [("i1", "a", "cat"), ("i1", "b", "dog"), ("i2", "a", "cat")]


def test_same_rows_from_csv_tsv_jsonl_parquet_and_gzip(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(ROWS)
    (tmp_path / "a.tsv").write_text(ROWS.replace(",", "\t"))
    (tmp_path / "a.jsonl").write_text(
        "".join(json.dumps({"item": i, "annotator": a, "label": k}) + "\n" for i, a, k in EXPECTED)
    )
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(ROWS.encode()))
    (tmp_path / "gz-named-plain.csv").write_bytes(gzip.compress(ROWS.encode()))
    tables.write_table(
        str(tmp_path / "a.parquet"),
        pa.table(
            {k: [r[j] for r in EXPECTED] for j, k in enumerate(("item", "annotator", "label"))}
        ),
    )
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + ROWS.encode())
    for name in (
        "a.csv",
        "a.tsv",
        "a.jsonl",
        "a.csv.gz",
        "gz-named-plain.csv",
        "a.parquet",
        "bom.csv",
    ):
        assert _codes(tmp_path / name) == EXPECTED, name


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bz2.compress(ROWS.encode()), "bzip2"),
        (ROWS.encode("utf-16"), "UTF-16"),
        ("item,annotator,label\ni1,a,caté\n".encode("latin-1"), "not UTF-8"),
        (b"item,worker\ni1,a\n", r"lacks column\(s\) label"),
    ],
)
def test_unreadable_inputs_are_refused_with_one_clear_line(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(data)
    with pytest.raises(InputError, match=message) as info:
        read_label_table(str(path))
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_spellings_are_never_a_class_and_rows_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(
        "item,annotator,label\ni1,a,cat\ni1,b,NA\ni2,a,null\n\ni2,b, N/A \ni3,c,\ni3,a,dog\n"
        "i3,a,cat\nNaN,a,cat\ni4,a,cat,extra\n"
    )
    read = read_label_table(str(path))
    assert read.encoded.labels == ("cat", "dog")
    assert {(b.line, b.field) for b in read.bad} == {
        (3, "label"),
        (4, "label"),
        (6, "label"),
        (7, "label"),
        (9, "annotator"),  # repeated (i3, a): the first is kept
        (10, "item"),
        (11, "*"),
    }
    assert read.rows == 9  # every non-blank data line: 2 valid + 7 bad
    assert read.encoded.item.shape[0] == 2


def test_label_set_checks_and_unknown_labels(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("item,annotator,label\ni1,a,cat\ni1,b,wolf\n")
    read = read_label_table(str(path), labels=["dog", "cat"])
    assert read.encoded.labels == ("dog", "cat")
    assert read.encoded.label.tolist() == [1]
    assert [(b.line, b.field) for b in read.bad] == [(3, "label")]
    assert "wolf" in read.bad[0].reason


def test_multilabel_cell_with_a_label_that_contains_the_separator(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("item,annotator,label\ni1,a,rock|roll\ni1,b,rock|jazz\ni2,a,rock||jazz\n")
    read = read_annotations(
        str(path),
        task_type=TaskType.IMAGE_MULTILABEL_CLASSIFICATION,
        labels=["rock|roll", "rock", "jazz"],
    )
    assert [a.value for a in read.annotations] == [
        frozenset({"rock|roll"}),
        frozenset({"rock", "jazz"}),
    ]
    assert [(b.line, b.field) for b in read.bad] == [(4, "labels")]


def test_all_bad_input_is_an_error_with_no_output(tmp_path: Path, capsys) -> None:
    path = tmp_path / "a.csv"
    path.write_text("item,annotator,label\ni1,a,NA\ni2,,cat\n")
    out = tmp_path / "out.csv"
    assert main(["consolidate", str(path), "--out", str(out)]) == 2
    assert not out.exists()
    assert "no valid annotations" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet", ".tsv"])
def test_consolidate_writes_the_format_its_extension_names(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "a.csv"
    path.write_text(ROWS)
    out = tmp_path / f"out{suffix}"
    old = os.umask(0o022)
    try:
        assert main(["consolidate", str(path), "--out", str(out), "--method", "mv"]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # the umask, not a temp file's 0600
    loaded = tables.load(str(out), ("item", "label", "confidence"))
    rows = loaded.data.to_pydict()
    assert rows["item"] == ["i1", "i2"]
    assert rows["label"] == [None, "cat"]  # the tie is a missing value, not a class
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unknown_output_extension_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    path = tmp_path / "a.csv"
    path.write_text(ROWS)
    assert main(["consolidate", str(path), "--out", str(tmp_path / "out.txt")]) == 2
    assert "name the output .csv, .tsv, .jsonl or .parquet" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_write_error_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(tables.WriteError, match="cannot write"):
        tables.write_table(str(folder / "x.csv"), pa.table({"a": [1]}))
    assert list(folder.iterdir()) == []


def test_write_error_from_the_engine_is_one_line(tmp_path: Path, monkeypatch) -> None:
    # A full disk: the engine's write fails; no temp file is left, the old output stays whole.
    out = tmp_path / "x.csv"
    out.write_text("old\n")

    def replace(_src: str, _dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(tables.WriteError, match="No space left on device") as info:
        tables.write_table(str(out), pa.table({"a": [1]}))
    assert "\n" not in str(info.value)
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.csv"]


def test_gold_reports_unused_items(tmp_path: Path, caplog) -> None:
    path = tmp_path / "a.csv"
    path.write_text(ROWS)
    gold = tmp_path / "gold.csv"
    gold.write_text("item,label\ni1,dog\ni9,cat\ni2,NA\n")
    found, bad = read_gold(str(gold), labels=["cat", "dog"])
    assert found == {"i1": "dog", "i9": "cat"}
    assert [(b.line, b.field) for b in bad] == [(4, "label")]
    out = tmp_path / "out.csv"
    assert main(["consolidate", str(path), "--out", str(out), "--gold", str(gold)]) == 0
    assert "1 of 2 gold item(s) have no annotation" in caplog.text


@pytest.mark.server
def test_gcs_input_and_output(gcs_bucket: str) -> None:
    from labelloop import storage

    src = f"{gcs_bucket}/in/a.csv"
    storage.write_text(src, ROWS)
    out = f"{gcs_bucket}/out/labels.parquet"
    assert main(["consolidate", src, "--out", out, "--method", "mv"]) == 0
    assert storage.read_bytes(out)[:4] == b"PAR1"


# --------------------------------------------------------------------------- properties

_TEXT = st.one_of(
    st.text(alphabet=st.sampled_from([*"ab c,\"'|é\t"]), max_size=6),
    st.sampled_from(["NA", "null", " N/A ", "None", "-"]),
)
_ROW = st.tuples(
    st.one_of(st.sampled_from(["i1", "i2", "i3"]), _TEXT),
    st.one_of(st.sampled_from(["w1", "w2"]), _TEXT),
    st.one_of(st.sampled_from(["cat", "dog"]), _TEXT),
)


def _csv_cell(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\n') else value


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.one_of(_ROW, st.just(None)), max_size=12), as_json=st.booleans())
def test_readers_never_crash_never_drop_and_name_file_line_field(
    tmp_path: Path, rows: list[tuple[str, str, str] | None], as_json: bool
) -> None:
    path = tmp_path / ("p.jsonl" if as_json else "p.csv")
    lines = [] if as_json else ["item,annotator,label"]
    for row in rows:
        if row is None:  # a line that is not a record
            lines.append("{oops" if as_json else "only,two")
        elif as_json:
            lines.append(json.dumps(dict(zip(("item", "annotator", "label"), row, strict=True))))
        else:
            lines.append(",".join(_csv_cell(v) for v in row))
    path.write_text("\n".join(lines) + "\n")
    data_lines = len(rows)
    for read_fn in (_read_codes, _read_rows, _read_gold):
        try:
            good, bad = read_fn(str(path))
        except InputError as exc:  # only "nothing valid" or a refusal, never a traceback
            refusal = str(exc)
        else:
            refusal = ""
        if refusal:
            assert str(path) in refusal
            continue
        assert good + len(bad) == data_lines
        for b in bad:
            assert b.source == str(path)
            assert 1 <= b.line <= len(lines)
            assert b.field


def _read_codes(uri: str) -> tuple[int, list]:
    read = read_label_table(uri)
    return int(read.encoded.item.shape[0]), read.bad


def _read_rows(uri: str) -> tuple[int, list]:
    read = read_annotations(uri, task_type=TaskType.TEXT_CLASSIFICATION, labels=["cat", "dog"])
    return len(read.annotations), read.bad


def _read_gold(uri: str) -> tuple[int, list]:
    # Gold reads item,label; count its rows (a repeated item with the same label is one entry).
    found, bad = read_gold(uri, labels=["cat", "dog"])
    return len(found) + _same_label_repeats(uri, found), bad


def _same_label_repeats(uri: str, found: dict[str, str]) -> int:
    rows = tables.load(uri, ("item", "label")).data.to_pydict()
    seen: dict[str, int] = {}
    for item, label in zip(rows["item"], rows["label"], strict=True):
        key = (item or "").strip()
        if key in found and (label or "").strip() == found[key]:
            seen[key] = seen.get(key, 0) + 1
    return sum(n - 1 for n in seen.values())
