"""Select the next batch from Vertex AI batch-prediction output, through the columnar engine.

Vertex writes `prediction.results-NNNNN-of-NNNNN` files under its output directory; each line is
`{"instance": {"content": URI or text, "mimeType": ...}, "prediction": {"ids": [...],
"displayNames": [...], "confidences": [...]}}`; `write_predictions` writes a file of that shape
(any model's scores, e.g. for `predictions_uri`). The portable pipeline's own model does not go
through this reader: `stages/select_for_labeling.py` scores the pool with it in memory.

One engine pass (`prediction_query`, DuckDB) reads every file (a folder's shards in parallel),
checks and scores each line and keeps the best candidates, the counts and the first bad
records; no per-line Python object. The candidates are re-scored here with the strategy's numpy
score (`strategies.SCORERS`) and re-ranked, so the answer is the exact one. Lines the engine
cannot parse or vouch for (not JSON, an `instance` that is a string, ...) are decided by the
exact reader `parse_line` (`json.loads`), so every line is either used or a bad record.

A bad record names file, line and field: a line that is not JSON or not an object; a missing
or empty `instance.content`; `confidences` missing, empty, or holding anything but plain numbers
(a string `"0.5"` or `true` is refused, never cast); NaN or infinite, negative, or not summing
to 1 (within `SUM_TOLERANCE`); `displayNames` or `ids` whose length differs from the
confidences'; a display name outside the configured labels; an item seen earlier (the first is
kept). Memory: the engine's scan buffers, the candidates, and one hash per item for duplicates.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from labelloop import lines, storage, tables
from labelloop.active_learning import prediction_query, strategies
from labelloop.errors import BadRecord, InputError
from labelloop.schemas import text_item_id

log = logging.getLogger(__name__)

VERTEX_RESULTS_PREFIX = "prediction.results-"
SUM_TOLERANCE = prediction_query.SUM_TOLERANCE
MAX_BAD_KEPT = 10_000
HISTOGRAM_EDGES = np.linspace(0.0, 1.0, 11)
# Batch-aware strategies and class balancing re-rank this many times k best-by-margin candidates.
CANDIDATE_FACTOR = 10
# Spare candidates beyond k: the engine's and numpy's scores may differ in the last bit.
SPARE_CANDIDATES = 64


# --------------------------------------------------------------------------- the exact reader


def _check_row(conf: Any) -> str | None:
    """Why a confidences list is bad, or None."""
    if not isinstance(conf, list) or not conf:
        return "missing or empty"
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in conf):
        return "not all numbers"
    if any(math.isnan(v) or math.isinf(v) for v in conf):
        return "NaN or infinite value"
    if any(v < 0 for v in conf):
        return "negative value"
    total = float(sum(conf))
    if abs(total - 1.0) > SUM_TOLERANCE:
        return f"sums to {total:.4g}, not 1"
    return None


def _check_vectors(prediction: dict[str, Any], n: int, labels: Sequence[str] | None) -> None:
    """Raise ValueError (field first) when `displayNames` / `ids` do not fit the confidences."""
    names = prediction.get("displayNames")
    for key, noun in (("displayNames", "names"), ("ids", "ids")):
        value = prediction.get(key)
        if value is not None and (not isinstance(value, list) or len(value) != n):
            got = len(value) if isinstance(value, list) else "no list of"
            raise ValueError(f"prediction.{key}: {got} {noun} for {n} confidences")
    if labels and isinstance(names, list):
        outside = [str(x) for x in names if str(x) not in set(labels)]
        if outside:
            raise ValueError(f"prediction.displayNames: not in the labels: {', '.join(outside)}")


def parse_line(
    text: str | bytes, *, labels: Sequence[str] | None = None
) -> tuple[str, list[float], list[str]]:
    """One prediction line -> (content, confidences, display names); raises ValueError if bad.

    The reference for the engine's checks (the same rules, property-tested against it). The
    error message starts with the field: `"prediction.confidences: negative value"`.
    """
    try:
        row = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"*: not valid JSON ({getattr(exc, 'msg', 'not UTF-8')})") from None
    if not isinstance(row, dict):
        raise ValueError("*: not a JSON object")
    instance = row.get("instance")
    content = None
    if isinstance(instance, dict):
        content = instance.get("content", instance.get("key"))
    elif isinstance(instance, str):
        content = instance
    if content is None:
        content = row.get("key")
    if not isinstance(content, str) or not content:
        raise ValueError("instance.content: missing or empty")
    prediction = row.get("prediction")
    if not isinstance(prediction, dict):
        raise ValueError("prediction: missing")
    conf = prediction.get("confidences")
    reason = _check_row(conf)
    if reason is not None or not isinstance(conf, list):
        raise ValueError(f"prediction.confidences: {reason}")
    _check_vectors(prediction, len(conf), labels)
    names = prediction.get("displayNames")
    if not isinstance(names, list):
        names = [str(i) for i in range(len(conf))]
    return content, [float(v) for v in conf], [str(n) for n in names]


# --------------------------------------------------------------------------- files


def prediction_files(uri: str) -> list[str]:
    """The prediction files at `uri`: a file, or a folder/prefix of Vertex result files.

    In a folder, `prediction.results-*` files are read; failing those, `*.jsonl` files.

    Raises:
        InputError: Nothing to read at `uri`.
    """
    if storage.exists(uri):
        return [uri]
    if storage.is_dir(uri):
        files = list(storage.iter_files(uri))
        vertex = [f for f in files if storage.basename(f).startswith(VERTEX_RESULTS_PREFIX)]
        chosen = vertex or [f for f in files if f.lower().endswith(".jsonl")]
        if chosen:
            return chosen
    raise InputError(
        f"no predictions found: expected a JSONL file or a folder with "
        f"{VERTEX_RESULTS_PREFIX}* files",
        source=uri,
        field="predictions_uri",
    )


@contextlib.contextmanager
def _local_sources(files: Sequence[str]) -> Iterator[list[tables.Source]]:
    """Readable local copies of `files` (`gs://` shards downloaded in parallel)."""
    with contextlib.ExitStack() as stack:

        def enter(uri: str) -> tables.Source:
            return stack.enter_context(tables.local_source(uri, default_format="jsonl"))

        if sum(storage.is_gcs(f) for f in files) > 1:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                yield list(pool.map(enter, files))
        else:
            yield [enter(f) for f in files]


def _records(source: tables.Source, wanted: set[int]) -> dict[int, tuple[int, bytes]]:
    """Record number (1-based, blank lines skipped as the engine skips them) -> (line, bytes)."""
    out: dict[int, tuple[int, bytes]] = {}
    last = max(wanted, default=0)
    with lines.open_plain(source) as fh:
        record = 0
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            record += 1
            if record in wanted:
                out[record] = (number, raw.rstrip(b"\r\n"))
                if record >= last:
                    break
    return out


def _line_numbers(source: tables.Source, records: int, wanted: set[int]) -> dict[int, int]:
    """Record number -> file line: the same number unless the file has blank lines."""
    if source.compression is None:
        lines = 0
        last = b"\n"
        with open(source.path, "rb") as fh:
            while block := fh.read(16 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
        if lines + (last != b"\n") == records:
            return {r: r for r in wanted}
    return {r: line for r, (line, _) in _records(source, wanted).items()}


# --------------------------------------------------------------------------- selection


@dataclasses.dataclass(frozen=True)
class SelectedPrediction:
    """One selected item: its id, score, predicted label and the file it was read from."""

    item: str
    score: float
    predicted: str
    source: str
    confidences: dict[str, float]
    content: str


@dataclasses.dataclass(frozen=True)
class PredictionSelection:
    """The outcome of `select_from_predictions`."""

    items: list[SelectedPrediction]
    strategy: str
    pool: int
    excluded: int
    bad_records: int
    bad: list[BadRecord]
    pool_histogram: dict[str, list[Any]]
    labels: list[str]


def item_id(content: str) -> str:
    """The labelloop item id of a prediction instance's `content` (URI, path or inline text)."""
    if content.startswith(prediction_query.URI_PREFIXES):
        return content
    return text_item_id(content)


def _top(scores: np.ndarray, items: Sequence[str], k: int) -> np.ndarray:
    """Indices of the k best scores; ties by the smaller item."""
    values = scores.tolist()
    order = sorted(range(len(values)), key=lambda i: (-values[i], items[i]))
    return np.asarray(order[: max(0, k)], dtype=np.int64)


def _exact_scores(rows: list[list[float]], *, strategy: str) -> np.ndarray:
    """The strategy's numpy score of each row (rows of one width share one matrix)."""
    out = np.zeros(len(rows))
    widths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    name = strategy if strategy in strategies.SCORERS else "margin"
    for width in np.unique(widths).tolist():
        members = np.flatnonzero(widths == width)
        matrix = np.asarray([rows[i] for i in members.tolist()], dtype=np.float64)
        out[members] = strategies.uncertainty(matrix, strategy=name)
    return out


@dataclasses.dataclass
class _Candidate:
    file: int
    content: str
    conf: list[float]
    names: list[str]
    score: float  # the engine's (random's draw); re-scored exactly for the others


def select_from_predictions(
    uri: str,
    k: int,
    *,
    strategy: str,
    seed: int = 0,
    exclude_ids: Iterable[str] = (),
    labels: Sequence[str] | None = None,
    class_balance: bool = False,
    max_bad_kept: int = MAX_BAD_KEPT,
) -> PredictionSelection:
    """Read prediction files and pick `k` items to label next.

    Uncertainty strategies and random keep a top-k; batch-aware strategies (and class
    balancing) keep the `CANDIDATE_FACTOR * k` smallest-margin items and re-rank those on their
    probability vectors. Duplicate items (same `instance.content`) after the first are bad
    records (a line only the exact reader can read is compared with the candidates).

    Args:
        uri: A predictions JSONL, or a Vertex batch-prediction output folder / `gs://` prefix.
        k: How many items to select.
        strategy: One of `strategies.STRATEGIES`.
        seed: Seed of `random` (a per-item draw, so the sample does not depend on file order)
            and of the batch-aware re-ranking.
        exclude_ids: Item ids never selected (already labeled or queued); they count as excluded,
            not as pool.
        labels: The label set: display names outside it are bad records, and it is the column
            order of `confidences` in the output; default: the display names seen, sorted.
        class_balance: Spread the picks evenly over predicted classes.
        max_bad_kept: Bad records kept for the report (all are counted).

    Raises:
        InputError: Unknown strategy, no prediction files at `uri`, or every line bad.
    """
    if strategy not in strategies.STRATEGIES:
        raise InputError(
            f"unknown strategy {strategy!r}; expected one of {', '.join(strategies.STRATEGIES)}",
            field="strategy",
        )
    files = prediction_files(uri)
    batch_aware = strategies.needs_features(strategy) or class_balance
    keep = k * CANDIDATE_FACTOR if batch_aware else k
    excluded_ids = set(exclude_ids)
    with _local_sources(files) as sources:
        con = tables.connect()
        try:
            result = _engine_pass(
                con, sources, strategy=strategy, seed=seed, n=keep + SPARE_CANDIDATES,
                labels=labels, excluded_ids=excluded_ids, max_bad=max_bad_kept,
            )  # fmt: skip
        finally:
            con.close()
        passed, dup_rows = result
        bad, candidates, extra = _resolve(
            passed,
            sources,
            files,
            dup_rows,
            strategy=strategy,
            seed=seed,
            labels=labels,
            excluded_ids=excluded_ids,
        )
    histogram = np.asarray(passed.histogram) + extra.histogram
    bad_count = passed.bad_count + len(dup_rows) + extra.bad_count
    bad = sorted(bad, key=lambda r: (files.index(r.source), r.line))[:max_bad_kept]
    if bad_count and not passed.pool + extra.pool + passed.excluded + extra.excluded:
        raise InputError(
            f"no valid predictions: all {bad_count} line(s) are bad; first: {bad[0]}", source=uri
        )
    if bad_count:
        log.warning(
            "%d bad prediction line(s); first: %s", bad_count, "; ".join(str(r) for r in bad[:3])
        )
    items, label_list = _finish(
        candidates, files, k, keep=keep, strategy=strategy, seed=seed,
        labels=labels, class_balance=class_balance,
    )  # fmt: skip
    return PredictionSelection(
        items=items,
        strategy=strategy,
        pool=passed.pool + extra.pool,
        excluded=passed.excluded + extra.excluded,
        bad_records=bad_count,
        bad=bad,
        pool_histogram={"counts": histogram.tolist(), "edges": HISTOGRAM_EDGES.tolist()},
        labels=label_list,
    )


def _engine_pass(
    con: Any,
    sources: list[tables.Source],
    *,
    strategy: str,
    seed: int,
    n: int,
    labels: Sequence[str] | None,
    excluded_ids: set[str],
    max_bad: int,
) -> tuple[prediction_query.Pass, list[tuple[int, int]]]:
    """The engine's pass: a parallel one; numbered again to name bad lines and duplicates (and
    without the duplicates) when there are any; keyed by item too when the cut is tied."""
    prediction_query.table(con, "excl", id=("VARCHAR", sorted(excluded_ids)))
    options: dict[str, Any] = {
        "strategy": strategy,
        "seed": seed,
        "n": n,
        "labels": labels,
        "edges": HISTOGRAM_EDGES.tolist(),
        "max_bad": max_bad,
        "exclude_text_ids": any(x.startswith("text:") for x in excluded_ids),
    }
    paths = [s.path for s in sources]
    compressions = {s.compression for s in sources}
    if len(compressions) > 1:
        raise InputError(
            "the prediction files are compressed in different ways "
            f"({', '.join(sorted(str(c or 'none') for c in compressions))}): use one",
            source=sources[0].uri,
        )
    options["compression"] = compressions.pop()
    options["common"] = prediction_query.spelling(con, paths[0], options["compression"])
    passed = prediction_query.run(con, prediction_query.build(paths, **options, skip_rows=False))
    options["positions"] = needs_lines = bool(
        passed.bad_count or passed.slow_count or passed.repeated
    )
    sql = prediction_query.build(paths, **options, skip_rows=False)
    if needs_lines:
        passed = prediction_query.run(con, sql)
    dups: list[tuple[int, int]] = []
    if passed.repeated:
        dups = prediction_query.duplicates(con, sql, passed.repeated)
        prediction_query.table(
            con, "skip", f=("BIGINT", [f for f, _ in dups]), o=("BIGINT", [o for _, o in dups])
        )
    if dups or prediction_query.tied_cut(passed, n - SPARE_CANDIDATES):
        sql = prediction_query.build(paths, **options, skip_rows=bool(dups), exact_ties=True)
        passed = prediction_query.run(con, sql)
    return passed, dups


@dataclasses.dataclass
class _Extra:
    """What the exact reader added: lines the engine left to it."""

    pool: int = 0
    excluded: int = 0
    bad_count: int = 0
    histogram: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(10, np.int64))


def _resolve(
    passed: prediction_query.Pass,
    sources: list[tables.Source],
    files: list[str],
    dup_rows: list[tuple[int, int]],
    *,
    strategy: str,
    seed: int,
    labels: Sequence[str] | None,
    excluded_ids: set[str],
) -> tuple[list[BadRecord], list[_Candidate], _Extra]:
    """Bad records with file lines, the engine's candidates, and the lines left to `parse_line`."""
    spans = passed.spans()
    reasons: list[tuple[int, int, str, str]] = []
    for f, o, why in passed.bad:
        field, _, reason = why.partition("|")
        reasons.append((f, o, field, reason))
    reasons += [(f, o, "instance.content", "duplicate item") for f, o in dup_rows]
    wanted: dict[int, set[int]] = {}
    for f, o, _, _ in reasons:
        wanted.setdefault(f, set()).add(o - spans[f][0])
    lines = {f: _line_numbers(sources[f], spans[f][1], records) for f, records in wanted.items()}
    bad = [
        BadRecord(files[f], lines[f][o - spans[f][0]], field, reason)
        for f, o, field, reason in reasons
    ]
    candidates = [
        _Candidate(int(c["f"]), c["content"], [float(x) for x in json.loads(c["cj"])],
                   _names(c["names"]), float(c["s"]))
        for c in passed.candidates
    ]  # fmt: skip
    extra = _Extra()
    slow: dict[int, set[int]] = {}
    for f, o in passed.slow:
        slow.setdefault(f, set()).add(o - spans[f][0])
    seen = {c.content for c in candidates}
    for f, records in sorted(slow.items()):
        for _, (line, raw) in sorted(_records(sources[f], records).items()):
            try:
                content, conf, names = parse_line(raw, labels=labels)
            except ValueError as exc:
                field, _, reason = str(exc).partition(": ")
                bad.append(BadRecord(files[f], line, field, reason))
                extra.bad_count += 1
                continue
            if content in seen:
                bad.append(BadRecord(files[f], line, "instance.content", "duplicate item"))
                extra.bad_count += 1
                continue
            seen.add(content)
            if item_id(content) in excluded_ids:
                extra.excluded += 1
                continue
            extra.pool += 1
            if strategy == "random":
                score = prediction_query.random_score(content, seed)
            else:
                score = float(_exact_scores([conf], strategy=strategy)[0])
            extra.histogram += np.histogram(np.clip([score], 0, 1), bins=HISTOGRAM_EDGES)[0]
            candidates.append(_Candidate(f, content, conf, names, score))
    return bad, candidates, extra


@functools.lru_cache(maxsize=64)
def _names(text: str | None) -> list[str]:
    """A `displayNames` JSON text as strings (decoded once per spelling; [] when absent)."""
    value = json.loads(text) if text is not None else None
    return [str(x) for x in value] if isinstance(value, list) else []


def _finish(
    candidates: list[_Candidate],
    files: list[str],
    k: int,
    *,
    keep: int,
    strategy: str,
    seed: int,
    labels: Sequence[str] | None,
    class_balance: bool,
) -> tuple[list[SelectedPrediction], list[str]]:
    """Re-score the candidates exactly, keep the best `keep` and, for batch-aware strategies,
    re-rank those down to `k`."""
    for c in candidates:
        if not c.names:
            c.names = [str(i) for i in range(len(c.conf))]
    if strategy == "random":
        scores = np.asarray([c.score for c in candidates])
    else:
        scores = _exact_scores([c.conf for c in candidates], strategy=strategy)
    # Ties go to the smaller item (as in the engine): the same answer however files are split.
    best = _top(scores, [c.content for c in candidates], keep)
    candidates = [candidates[int(i)] for i in best]
    scores = scores[best]
    if labels is None:
        names = sorted({n for ns in {tuple(c.names) for c in candidates} for n in ns})
    else:
        names = list(labels)
    if strategies.needs_features(strategy) or class_balance:
        column = {n: j for j, n in enumerate(names)}
        proba = np.zeros((len(candidates), len(names)))
        for i, c in enumerate(candidates):
            for name, value in zip(c.names, c.conf, strict=True):
                if name in column:
                    proba[i, column[name]] = value
        # The probability vectors are the embedding: near-identical predictions cluster.
        chosen = strategies.select(
            strategy if strategies.needs_features(strategy) else "margin",
            k,
            seed=seed,
            proba=proba,
            features=proba,
            class_balance=class_balance,
        ).indices
    else:
        chosen = np.arange(min(k, len(candidates)))
    out = []
    for i in np.asarray(chosen, dtype=np.int64).tolist():
        c = candidates[i]
        out.append(
            SelectedPrediction(
                item=item_id(c.content),
                score=float(scores[i]),
                predicted=c.names[c.conf.index(max(c.conf))] if c.conf else "",
                source=files[c.file],
                confidences=dict(zip(c.names, c.conf, strict=True)),
                content=c.content,
            )
        )
    return out, names


def write_predictions(
    uri: str,
    ids: Sequence[str],
    labels: Sequence[str],
    proba: np.ndarray,
    *,
    contents: Sequence[str] | None = None,
) -> int:
    """Write predictions in the Vertex batch-prediction shape (for the local model and tests).

    Args:
        uri: Output JSONL.
        ids: Item ids (URIs), one per row of `proba`.
        labels: Column names of `proba`.
        proba: (n, c) class probabilities.
        contents: The instance `content` per row (default: `ids`; inline text for text items).
    """
    contents = list(ids) if contents is None else list(contents)
    label_list = [str(label) for label in labels]
    id_list = [str(j) for j in range(len(label_list))]

    def rows() -> Iterator[dict[str, Any]]:
        for content, row in zip(contents, np.asarray(proba, dtype=np.float64), strict=True):
            yield {
                "instance": {"content": content},
                "prediction": {
                    "ids": id_list,
                    "displayNames": label_list,
                    "confidences": [float(v) for v in row],
                },
            }

    return storage.write_jsonl(uri, rows())
