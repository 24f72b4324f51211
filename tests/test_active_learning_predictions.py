"""Selection from Vertex-format prediction files through the engine: exactness, bad lines,
folders, and agreement with the exact reader (`parse_line`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from labelloop.active_learning import strategies as al
from labelloop.active_learning.predictions import (
    parse_line,
    prediction_files,
    select_from_predictions,
    write_predictions,
)
from labelloop.errors import InputError

LABELS = ["cat", "dog", "fox", "owl"]


def _pool(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = [f"gs://bucket/img/{i:05d}.png" for i in range(n)]
    proba = rng.dirichlet(np.full(len(LABELS), 0.5), size=n)
    return ids, proba


@pytest.mark.parametrize("strategy", ["least_confidence", "margin", "entropy"])
def test_top_k_equals_in_memory_top_k(tmp_path: Path, strategy: str) -> None:
    ids, proba = _pool(500)
    path = tmp_path / "pred.jsonl"
    write_predictions(str(path), ids, LABELS, proba)
    out = select_from_predictions(str(path), 25, strategy=strategy)
    expected = al.top_k(al.uncertainty(proba, strategy=strategy), 25)
    assert [s.item for s in out.items] == [ids[i] for i in expected]
    scores = al.uncertainty(proba, strategy=strategy)
    np.testing.assert_allclose([s.score for s in out.items], scores[expected], rtol=1e-12)
    assert [s.predicted for s in out.items] == [LABELS[j] for j in proba[expected].argmax(1)]
    assert out.pool == 500
    assert out.bad_records == 0
    assert sum(out.pool_histogram["counts"]) == 500


def test_bad_lines_are_reported_with_line_numbers_and_selection_completes(tmp_path: Path) -> None:
    ids, proba = _pool(40, seed=1)
    path = tmp_path / "pred.jsonl"
    write_predictions(str(path), ids, LABELS, proba)
    good = path.read_text().splitlines()

    def line(content: str, conf: object) -> str:
        return json.dumps({"instance": {"content": content}, "prediction": {"confidences": conf}})

    bad_lines = {
        # line number (1-based, after insertion) -> (text, expected field, reason fragment)
        3: (line("gs://b/nan.png", [float("nan"), 0.5, 0.5, 0.0]), "prediction.confidences", "NaN"),
        6: (line("gs://b/neg.png", [-0.1, 0.6, 0.5, 0.0]), "prediction.confidences", "negative"),
        9: (line("gs://b/sum.png", [0.1, 0.1, 0.1, 0.1]), "prediction.confidences", "sums to"),
        12: (
            json.dumps({"instance": {"content": "gs://b/none.png"}, "prediction": {}}),
            "prediction.confidences",
            "missing",
        ),
        15: (
            '{"instance": {"content": "gs://b/trunc.png"}, "prediction": {"confidences": [0.5,',
            "*",
            "not valid JSON",
        ),
        18: (line("gs://b/str.png", ["0.5", "0.5", 0, 0]), "prediction.confidences", "not all"),
        21: (good[0], "instance.content", "duplicate"),
        24: (line("", [0.5, 0.5, 0.0, 0.0]), "instance.content", "missing or empty"),
        27: (line("gs://b/inf.png", [float("inf"), 0, 0, 0]), "prediction.confidences", "NaN"),
    }
    lines = list(good)
    for number in sorted(bad_lines):
        lines.insert(number - 1, bad_lines[number][0])
    lines.insert(30, "")  # a blank line is not a record
    path.write_text("\n".join(lines) + "\n")
    out = select_from_predictions(str(path), 10, strategy="margin")
    got = {(b.line, b.field) for b in out.bad}
    assert got == {(n, field) for n, (_, field, _) in bad_lines.items()}
    for b in out.bad:
        assert bad_lines[b.line][2] in b.reason
        assert b.source == str(path)
    assert out.bad_records == len(bad_lines)
    assert out.pool == 40
    expected = al.top_k(al.margin(proba), 10)
    assert [s.item for s in out.items] == [ids[i] for i in expected]


def test_unusual_but_valid_json_reads_the_same_as_the_canonical_shape(tmp_path: Path) -> None:
    ids, proba = _pool(30, seed=2)
    canonical = tmp_path / "a.jsonl"
    write_predictions(str(canonical), ids, LABELS, proba)
    variant = tmp_path / "b.jsonl"
    rows = []
    for i, (item, row) in enumerate(zip(ids, proba, strict=True)):
        pred = {"displayNames": LABELS, "confidences": [float(v) for v in row]}
        rec = {"prediction": pred, "instance": {"mimeType": "image/png", "content": item}}
        # Compact separators, key order changed, exponent notation and an escaped slash.
        text = json.dumps(rec, separators=(",", ":"))
        if i % 3 == 0:
            text = text.replace(item, item.replace("/", "\\/"))
        rows.append(text)
    variant.write_text("\r\n".join(rows) + "\r\n")
    a = select_from_predictions(str(canonical), 8, strategy="entropy")
    b = select_from_predictions(str(variant), 8, strategy="entropy")
    assert [s.item for s in a.items] == [s.item for s in b.items]
    np.testing.assert_allclose([s.score for s in a.items], [s.score for s in b.items])
    assert b.bad_records == 0


def test_rows_with_another_number_of_classes_still_count(tmp_path: Path) -> None:
    ids, proba = _pool(20, seed=3)
    path = tmp_path / "pred.jsonl"
    write_predictions(str(path), ids, LABELS, proba)
    # Five uniform classes: least confidence 0.8, above any four-class row's (at most 0.75).
    extra = {
        "instance": {"content": "gs://b/five.png"},
        "prediction": {"displayNames": [*LABELS, "elk"], "confidences": [0.2] * 5},
    }
    with path.open("a") as fh:
        fh.write(json.dumps(extra) + "\n")
    out = select_from_predictions(str(path), 1, strategy="least_confidence")
    assert out.items[0].item == "gs://b/five.png"
    assert out.items[0].score == pytest.approx(0.8)
    assert out.pool == 21


def test_random_is_seeded_and_independent_of_file_order(tmp_path: Path) -> None:
    ids, proba = _pool(300, seed=4)
    path = tmp_path / "pred.jsonl"
    write_predictions(str(path), ids, LABELS, proba)
    shuffled = tmp_path / "shuffled.jsonl"
    write_predictions(str(shuffled), ids[::-1], LABELS, proba[::-1])
    a = select_from_predictions(str(shuffled), 20, strategy="random", seed=1)
    b = select_from_predictions(str(path), 20, strategy="random", seed=1)
    c = select_from_predictions(str(path), 20, strategy="random", seed=2)
    assert sorted(s.item for s in a.items) == sorted(s.item for s in b.items)
    assert {s.item for s in a.items} != {s.item for s in c.items}
    assert len({s.item for s in a.items}) == 20


def test_excluded_items_are_never_selected(tmp_path: Path) -> None:
    ids, proba = _pool(100, seed=5)
    path = tmp_path / "pred.jsonl"
    write_predictions(str(path), ids, LABELS, proba)
    best = al.top_k(al.margin(proba), 15)
    exclude = [ids[i] for i in best[:5]]
    out = select_from_predictions(str(path), 10, strategy="margin", exclude_ids=exclude)
    assert [s.item for s in out.items] == [ids[i] for i in best[5:15]]
    assert out.excluded == 5
    assert out.pool == 95


@pytest.mark.parametrize("strategy", ["k_center", "cluster_margin"])
def test_batch_aware_strategies_pick_distinct_uncertain_items(
    tmp_path: Path, strategy: str
) -> None:
    ids, proba = _pool(400, seed=6)
    path = tmp_path / "pred.jsonl"
    write_predictions(str(path), ids, LABELS, proba)
    out = select_from_predictions(str(path), 10, strategy=strategy, seed=0)
    chosen = [ids.index(s.item) for s in out.items]
    assert len(set(chosen)) == 10
    # Candidates are the 10 * k smallest-margin items.
    candidates = set(al.top_k(al.margin(proba), 100).tolist())
    assert set(chosen) <= candidates
    again = select_from_predictions(str(path), 10, strategy=strategy, seed=0)
    assert [s.item for s in again.items] == [s.item for s in out.items]


def test_class_balance_spreads_the_picks(tmp_path: Path) -> None:
    ids, proba = _pool(400, seed=7)
    path = tmp_path / "pred.jsonl"
    write_predictions(str(path), ids, LABELS, proba)
    out = select_from_predictions(
        str(path), 12, strategy="margin", class_balance=True, labels=LABELS
    )
    counts = {label: sum(s.predicted == label for s in out.items) for label in LABELS}
    assert sorted(counts.values()) == [3, 3, 3, 3]


def test_vertex_output_folder_reads_every_results_file(tmp_path: Path) -> None:
    ids, proba = _pool(60, seed=8)
    folder = tmp_path / "prediction-model-2026"
    folder.mkdir()
    write_predictions(
        str(folder / "prediction.results-00000-of-00002"), ids[:30], LABELS, proba[:30]
    )
    write_predictions(
        str(folder / "prediction.results-00001-of-00002"), ids[30:], LABELS, proba[30:]
    )
    (folder / "prediction.errors_stats-00000-of-00001").write_text("not predictions\n")
    assert [Path(f).name for f in prediction_files(str(folder))] == [
        "prediction.results-00000-of-00002",
        "prediction.results-00001-of-00002",
    ]
    out = select_from_predictions(str(folder), 5, strategy="least_confidence")
    expected = al.top_k(al.least_confidence(proba), 5)
    assert [s.item for s in out.items] == [ids[i] for i in expected]
    assert out.pool == 60


def test_duplicates_across_files_are_reported(tmp_path: Path) -> None:
    ids, proba = _pool(10, seed=9)
    folder = tmp_path / "out"
    folder.mkdir()
    write_predictions(str(folder / "prediction.results-00000-of-00002"), ids, LABELS, proba)
    write_predictions(str(folder / "prediction.results-00001-of-00002"), ids[:3], LABELS, proba[:3])
    out = select_from_predictions(str(folder), 10, strategy="margin")
    assert out.pool == 10
    assert [(Path(b.source).name, b.line) for b in out.bad] == [
        ("prediction.results-00001-of-00002", n) for n in (1, 2, 3)
    ]


def test_missing_predictions_raise_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no predictions found"):
        select_from_predictions(str(tmp_path / "nothing"), 5, strategy="margin")
    with pytest.raises(InputError, match="unknown strategy"):
        select_from_predictions(str(tmp_path), 5, strategy="coreset")


@pytest.mark.server
def test_vertex_output_prefix_on_gcs(gcs_bucket: str) -> None:
    from labelloop import storage

    ids, proba = _pool(300, seed=10)
    prefix = f"{gcs_bucket}/batch/prediction-model-1"
    for part, rows in enumerate((slice(0, 150), slice(150, 300))):
        write_predictions(
            storage.join(prefix, f"prediction.results-0000{part}-of-00002"),
            ids[rows],
            LABELS,
            proba[rows],
        )
    out = select_from_predictions(prefix, 7, strategy="margin")
    expected = al.top_k(al.margin(proba), 7)
    assert [s.item for s in out.items] == [ids[i] for i in expected]
    assert out.pool == 300
    assert out.items[0].source.startswith(prefix)


# --------------------------------------------------------------------------- engine vs exact reader


def _reference(path: Path, k: int, strategy: str) -> tuple[list[str], list[tuple[int, str]]]:
    """The straightforward reading: json per line, exact scores, full stable sort."""
    contents, rows, bad = [], [], []
    seen: set[str] = set()
    for number, text in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not text.strip():
            continue
        try:
            content, conf, _ = parse_line(text)
        except ValueError as exc:
            bad.append((number, str(exc).partition(": ")[0]))
            continue
        if content in seen:
            bad.append((number, "instance.content"))
            continue
        seen.add(content)
        contents.append(content)
        rows.append(conf)
    scores = [float(al.uncertainty(np.asarray([r]), strategy=strategy)[0]) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: (-scores[i], i))
    return [contents[i] for i in order[:k]], bad


def _formats(value: float, i: int) -> str:
    """The number spellings a JSON writer may use."""
    return [repr(value), f"{value:.6g}", f"{value:.3e}", f"{value:.17g}", f"{value:.2f}"][i % 5]


@pytest.mark.parametrize("strategy", ["least_confidence", "margin", "entropy"])
def test_selection_equals_the_json_reference_on_random_data_with_ties(
    tmp_path: Path, strategy: str
) -> None:
    rng = np.random.default_rng(11)
    n = 600
    proba = rng.dirichlet(np.full(4, 0.7), size=n)
    # Ties: repeated rows, and rows rounded to two decimals (many equal scores).
    proba[100:160] = proba[0]
    proba[200:300] = np.round(proba[200:300], 2)
    proba[200:300, 3] = 1.0 - proba[200:300, :3].sum(axis=1)
    proba = np.clip(proba, 0.0, 1.0)
    lines = []
    for i, row in enumerate(proba):
        numbers = ", ".join(_formats(float(v), i + j) for j, v in enumerate(row))
        lines.append(
            f'{{"instance": {{"content": "gs://b/{i:04d}.png"}}, '
            f'"prediction": {{"confidences": [{numbers}]}}}}'
        )
    path = tmp_path / "pred.jsonl"
    path.write_text("\n".join(lines) + "\n")
    expected, bad = _reference(path, 40, strategy)
    out = select_from_predictions(str(path), 40, strategy=strategy)
    assert [s.item for s in out.items] == expected
    # Two-decimal spellings can make a row sum to 1.01 or more: bad on both paths alike.
    assert [(b.line, b.field) for b in out.bad] == bad
    assert out.pool == n - len(bad)


def test_whitespace_and_key_order_variants_read_alike(tmp_path: Path) -> None:
    variants = [
        '{"instance": {"content": "gs://b/a.png"}, "prediction": {"confidences": %s}}',
        '{"instance":{"content":"gs://b/a.png","mimeType":"image/png"},"prediction":{"confidences":%s}}',
        '{ "prediction" : { "confidences" : %s , "ids": ["1","2","3","4"] } ,\t'
        '"instance" : { "mimeType" : "image/png" , "content" : "gs://b/a.png" } }',
        '{"prediction": {"displayNames": ["a", "b\\"q", "c", "d"], "confidences": %s}, '
        '"instance": {"content": "gs://b/a.png"}}',
        '{"instance": {"content": "gs://b/a.png"}, "prediction": {"confidences": %s}}\r',
        '{"instance": "gs://b/a.png", "prediction": {"confidences": %s}}',
        '{"key": "gs://b/a.png", "instance": {"bytes": "x"}, "prediction": {"confidences": %s}}',
    ]
    spellings = ["[0.125, 0.5, 0.25, 0.125]", "[1.25e-1,5E-1,0.25 ,\t125e-3]"]
    for template in variants:
        for spelling in spellings:
            line = (template % spelling).encode()
            path = tmp_path / "one.jsonl"
            path.write_bytes(line + b"\n")
            out = select_from_predictions(str(path), 1, strategy="least_confidence")
            assert [s.item for s in out.items] == ["gs://b/a.png"], line
            assert out.items[0].score == pytest.approx(0.5)
            assert out.bad_records == 0


@pytest.mark.parametrize(
    ("confidences", "field", "reason"),
    [
        ("[01, 0, 0, 0]", "*", "not valid JSON"),
        ("[1., 0, 0, 0]", "*", "not valid JSON"),
        ("[.5, 0.5, 0, 0]", "*", "not valid JSON"),
        ("[+0.5, 0.5, 0, 0]", "*", "not valid JSON"),
        ("[NaN, 0.5, 0.5, 0]", "prediction.confidences", "NaN"),
        ("[Infinity, 0, 0, 0]", "prediction.confidences", "NaN"),
        ("[1e400, 0, 0, 0]", "prediction.confidences", "NaN"),
        ('["0.5", 0.5, 0, 0]', "prediction.confidences", "not all numbers"),
        ("[true, 0, 0, 0]", "prediction.confidences", "not all numbers"),
        ("[]", "prediction.confidences", "missing or empty"),
        ("[-0.5, 0.5, 0.5, 0.5]", "prediction.confidences", "negative"),
        ("[0.2, 0.2, 0.2, 0.2]", "prediction.confidences", "sums to 0.8"),
        ("[0.5, 0.5, 0.0101, 0]", "prediction.confidences", "sums to 1.01"),
    ],
)
def test_bad_numbers_among_good_lines_read_as_json_would(
    tmp_path: Path, confidences: str, field: str, reason: str
) -> None:
    ids, proba = _pool(30, seed=12)
    path = tmp_path / "pred.jsonl"
    write_predictions(str(path), ids, LABELS, proba)
    lines = path.read_text().splitlines()
    lines.insert(
        7,
        '{"instance": {"content": "gs://b/bad.png"}, '
        f'"prediction": {{"confidences": {confidences}}}}}',
    )
    path.write_text("\n".join(lines) + "\n")
    out = select_from_predictions(str(path), 5, strategy="margin")
    assert [(b.line, b.field) for b in out.bad] == [(8, field)]
    assert reason in out.bad[0].reason
    assert out.pool == 30
    assert [s.item for s in out.items] == [ids[i] for i in al.top_k(al.margin(proba), 5)]


def test_values_within_rounding_of_the_sum_tolerance_follow_the_exact_rule(tmp_path: Path) -> None:
    # 0.99 + 0.02 = 1.01 exactly in decimal; in floats the sum may land either side of 1.01.
    rows = [[0.99, 0.02], [0.495, 0.495], [0.5, 0.51], [0.5, 0.509999]]
    path = tmp_path / "pred.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {"instance": {"content": f"gs://b/{i}.png"}, "prediction": {"confidences": r}}
            )
            + "\n"
            for i, r in enumerate(rows)
        )
    )
    out = select_from_predictions(str(path), 4, strategy="margin")
    _, bad = _reference(path, 4, "margin")
    assert [(b.line, b.field) for b in out.bad] == bad


def test_long_lines_and_no_final_newline(tmp_path: Path) -> None:
    ids, proba = _pool(120, seed=13)
    # Long ids make some lines longer than a block (the buffer grows).
    ids = [f"gs://bucket/{'x' * (i % 7) * 90}/{i}.png" for i in range(len(ids))]
    path = tmp_path / "pred.jsonl"
    write_predictions(str(path), ids, LABELS, proba)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # no newline after the last line
    out = select_from_predictions(str(path), 15, strategy="entropy")
    assert [s.item for s in out.items] == [ids[i] for i in al.top_k(al.entropy(proba), 15)]
    assert out.pool == 120
    assert out.bad_records == 0


def test_escaped_and_non_ascii_ids_and_duplicates_hash_alike(tmp_path: Path) -> None:
    rows = [
        ("gs://b/caf\u00e9.png", True),  # UTF-8 bytes on the fast path
        ("gs://b/caf\u00e9.png", False),  # the same id escaped: json.loads path
        ("gs://b/x.png", True),
        ("gs://b/x.png", True),
    ]
    lines = []
    for content, plain in rows:
        rec = {"instance": {"content": content}, "prediction": {"confidences": [0.5, 0.5]}}
        lines.append(json.dumps(rec, ensure_ascii=not plain))
    path = tmp_path / "pred.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = select_from_predictions(str(path), 5, strategy="margin")
    assert [(b.line, b.reason) for b in out.bad] == [(2, "duplicate item"), (4, "duplicate item")]
    assert sorted(s.item for s in out.items) == ["gs://b/caf\u00e9.png", "gs://b/x.png"]
    excluded = select_from_predictions(
        str(path), 5, strategy="margin", exclude_ids=["gs://b/caf\u00e9.png"]
    )
    assert excluded.excluded == 1
    assert [s.item for s in excluded.items] == ["gs://b/x.png"]


def test_a_trailing_comma_in_a_list_is_read_as_the_engine_reads_it(tmp_path: Path) -> None:
    # DuckDB's JSON parser accepts `[0.5, 0.5,]` (json.loads does not); no value changes, so
    # the line is used rather than refused. Documented in docs/data.md.
    path = tmp_path / "pred.jsonl"
    path.write_text(
        '{"instance": {"content": "gs://b/a.png"}, "prediction": {"confidences": [0.5, 0.5,]}}\n'
    )
    out = select_from_predictions(str(path), 1, strategy="margin")
    assert [s.item for s in out.items] == ["gs://b/a.png"]
    assert out.bad_records == 0


def test_gzip_files_are_read_whatever_their_name(tmp_path: Path) -> None:
    import gzip

    ids, proba = _pool(40, seed=15)
    plain = tmp_path / "pred.jsonl"
    write_predictions(str(plain), ids, LABELS, proba)
    lines = plain.read_text().splitlines()
    lines[9] = lines[9].replace('"confidences": [', '"confidences": [-1, ', 1)
    text = ("\n".join(lines) + "\n").encode()
    folder = tmp_path / "vertex-output"
    folder.mkdir()
    (folder / "prediction.results-00000-of-00001").write_bytes(gzip.compress(text))
    (tmp_path / "pred.jsonl.gz").write_bytes(gzip.compress(text))
    scores = al.margin(proba)
    scores[9] = -np.inf
    for uri in (folder, tmp_path / "pred.jsonl.gz"):
        out = select_from_predictions(str(uri), 5, strategy="margin")
        assert out.pool == 39
        assert [(b.line, b.reason) for b in out.bad] == [(10, "negative value")]
        assert [s.item for s in out.items] == [ids[i] for i in al.top_k(scores, 5)]
