"""Stream Vertex AI batch-prediction output and select the next batch in bounded memory.

Vertex writes `prediction.results-NNNNN-of-NNNNN` files under its output directory; each line is
`{"instance": {"content": URI or text, "mimeType": ...}, "prediction": {"ids": [...],
"displayNames": [...], "confidences": [...]}}`. The local model's predictions are written in the
same shape (`write_predictions`), so one reader serves both.

Speed: files are read in blocks of whole lines (16 MiB). In a block, numpy finds the two fields
the selection needs (`"content":` and `"confidences":`, by their colons) for every line at
once, and pandas' C CSV parser reads all the confidence lists as one numeric table; no Python
object is built per number and no dict per line. A line the fast path cannot vouch for (a key
missing or repeated, escapes in the id, a value that is not a plain number, another number of
classes, a blank) goes through `json.loads` and the same checks, so the answer does not depend
on which path read a line. The fast path reads only those two fields: it does not re-validate
the rest of a line (a line cut short after its confidences still counts).

Memory: per block a small multiple of the block size; across the pool only the running top
candidates and one 64-bit hash per item (to find duplicates): about 8 bytes per pool item.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

import numpy as np

from labelloop import storage
from labelloop.active_learning import strategies
from labelloop.errors import BadRecord, InputError
from labelloop.schemas import text_item_id

log = logging.getLogger(__name__)

VERTEX_RESULTS_PREFIX = "prediction.results-"
SUM_TOLERANCE = 0.01
BLOCK_BYTES = 16 << 20
MAX_BAD_KEPT = 10_000
HISTOGRAM_EDGES = np.linspace(0.0, 1.0, 11)
# Batch-aware strategies and class balancing re-rank this many times k best-by-margin candidates.
CANDIDATE_FACTOR = 10

_CONF_KEY = b'"confidences"'
_CONTENT_KEY = b'"content"'
_MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------- hashing


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: spreads a 64-bit key over all bits."""
    h = h.astype(np.uint64, copy=True)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def _hash_bytes(values: Sequence[bytes]) -> np.ndarray:
    """A 64-bit hash per byte string, for duplicates and exclusions within this process.

    Python's own (SipHash) bytes hash: fast, and its per-process salt does not matter because
    every comparison happens inside one run. Two different ids collide with probability about
    n**2 / 2**64 (3e-6 for 10M items).
    """
    return np.fromiter(map(hash, values), dtype=np.int64, count=len(values)).view(np.uint64)


def _stable_keys(values: Sequence[bytes]) -> np.ndarray:
    """A hash that is the same in every process (CRC-32 and Adler-32, mixed): random's draw."""
    packed = np.fromiter(
        ((zlib.crc32(v) << 32) | zlib.adler32(v) for v in values),
        dtype=np.uint64,
        count=len(values),
    )
    return _mix(packed)


def hash_ids(ids: Iterable[str]) -> np.ndarray:
    """The hash the reader gives an instance's `content` (for exclusion lists)."""
    return _hash_bytes([s.encode("utf-8") for s in ids])


class _SeenHashes:
    """A set of uint64 hashes as sorted runs merged by size: O(log n) runs, 8 bytes per item."""

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def contains(self, h: np.ndarray) -> np.ndarray:
        found = np.zeros(h.shape[0], dtype=bool)
        for run in self.runs:
            pos = np.searchsorted(run, h)
            hit = pos < run.shape[0]
            found[hit] |= run[pos[hit]] == h[hit]
        return found

    def add(self, h: np.ndarray) -> None:
        run = np.sort(h)
        while self.runs and self.runs[-1].shape[0] <= run.shape[0]:
            run = np.sort(np.concatenate([self.runs.pop(), run]))
        self.runs.append(run)


# --------------------------------------------------------------------------- block parsing


@dataclasses.dataclass
class _Block:
    """The good lines of one block: where they are, their ids' hashes and scores."""

    line_numbers: np.ndarray  # (g,) 1-based line numbers in the file
    hashes: np.ndarray  # (g,) uint64
    scores: np.ndarray  # (g,)
    starts: np.ndarray  # (g,) byte offsets of the lines in the block
    ends: np.ndarray  # (g,)
    bad: list[BadRecord]


def _scores(conf: np.ndarray, keys: np.ndarray, *, strategy: str, seed: int) -> np.ndarray:
    """Per-line scores: uncertainty, or a seeded uniform draw keyed by the item (random)."""
    if strategy == "random":
        keyed = _mix(keys ^ _mix(np.asarray([seed & _MASK64], dtype=np.uint64)))
        return (keyed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    # Batch-aware strategies and class balancing prefilter by margin.
    name = strategy if strategy in strategies.SCORERS else "margin"
    return strategies.uncertainty(conf, strategy=name)


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


def parse_line(text: str | bytes) -> tuple[str, list[float], list[str]]:
    """One prediction line -> (content, confidences, display names); raises ValueError if bad.

    The error message starts with the field: `"prediction.confidences: negative value"`.
    """
    try:
        row = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"*: not valid JSON ({exc})") from None
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
    names = prediction.get("displayNames")
    if not isinstance(names, list) or len(names) != len(conf):
        names = [str(i) for i in range(len(conf))]
    return content, [float(v) for v in conf], [str(n) for n in names]


def _read_matrix(spans: list[bytes]) -> tuple[np.ndarray, np.ndarray] | None:
    """Parse comma-separated number lists with pandas' C parser.

    Returns:
        (matrix, off_width): an (n, width) matrix for the most common width, and a mask of the
        rows with another number of values (their matrix rows are meaningless). None when the
        C parser cannot vouch for the block (quotes, comment characters, junk): the caller then
        reads every line with `json.loads`.
    """
    import pandas as pd

    text = b"\n".join(spans)
    if b'"' in text or b"#" in text:
        return None
    width = common = spans[0].count(b",") + 1
    off_width = np.zeros(len(spans), dtype=bool)
    for attempt in range(2):
        try:
            frame = pd.read_csv(
                io.BytesIO(text),
                header=None,
                names=list(range(width)),
                dtype=np.float64,
                engine="c",
                skip_blank_lines=False,
                quoting=3,  # csv.QUOTE_NONE
            )
        except (ValueError, pd.errors.ParserError):
            if attempt == 0:
                # Rows of different lengths: parse at the widest, keep the most common width.
                counts = np.fromiter((s.count(b",") + 1 for s in spans), dtype=np.int64)
                width = int(counts.max())
                common = int(np.bincount(counts).argmax())
                off_width = counts != common
                continue
            return None
        matrix = frame.to_numpy(dtype=np.float64)
        if matrix.shape[0] != len(spans):
            return None
        return matrix[:, :common], off_width
    return None


def _parse_block(buf: bytes, *, source: str, first_line: int, strategy: str, seed: int) -> _Block:
    """Score the lines of one block; bad lines become `BadRecord`s with their line numbers."""
    raw = np.frombuffer(buf, dtype=np.uint8)
    newlines = np.flatnonzero(raw == ord("\n"))
    if newlines.shape[0] == 0 or newlines[-1] != raw.shape[0] - 1:
        newlines = np.append(newlines, raw.shape[0])
    n = newlines.shape[0]
    offsets = np.concatenate([[0], newlines + 1])
    # Locate `"confidences":` and `"content":` by their colons (vectorized); a line must hold
    # exactly one of each, followed by `[` and `"` (one optional space), else json.loads reads it.
    colons = np.flatnonzero(raw == ord(":"))
    value_starts = []
    for key, opener in ((_CONF_KEY, ord("[")), (_CONTENT_KEY, ord('"'))):
        at = colons[colons >= len(key)]
        for j in range(len(key) - 1, -1, -1):
            at = at[raw[at - len(key) + j] == key[j]]
        start = at + 1
        start = np.minimum(
            start + (raw[np.minimum(start, raw.shape[0] - 1)] == ord(" ")), raw.shape[0] - 1
        )
        at_line = np.searchsorted(newlines, at)
        once = np.bincount(at_line, minlength=n) == 1
        ok = raw[start] == opener
        pos = np.full(n, -1, dtype=np.int64)
        pos[at_line[ok]] = start[ok] + 1
        value_starts.append((pos, once))
    (conf_at, conf_once), (content_at, content_once) = value_starts
    fast = conf_once & content_once & (conf_at > 0) & (content_at > 0)
    fast_rows_arr = np.flatnonzero(fast)
    closes = np.flatnonzero(raw == ord("]"))
    quotes = np.flatnonzero(raw == ord('"'))
    o = conf_at[fast_rows_arr]
    q = content_at[fast_rows_arr]
    e = closes[np.minimum(np.searchsorted(closes, o), max(closes.shape[0] - 1, 0))]
    qe = quotes[np.minimum(np.searchsorted(quotes, q), max(quotes.shape[0] - 1, 0))]
    line_end = newlines[fast_rows_arr]
    ok = (e > o) & (e < line_end) & (qe > q) & (qe < line_end)
    if closes.shape[0] == 0 or quotes.shape[0] == 0:
        ok[:] = False
    slashes = np.flatnonzero(raw == ord("\\"))
    if slashes.size:
        ok &= np.searchsorted(slashes, q) == np.searchsorted(slashes, qe)
    slow_rows = np.flatnonzero(~fast).tolist() + fast_rows_arr[~ok].tolist()
    fast_rows_arr, o, e, q, qe = fast_rows_arr[ok], o[ok], e[ok], q[ok], qe[ok]
    conf_spans = [buf[a:b] for a, b in zip(o.tolist(), e.tolist(), strict=True)]
    ids = [buf[a:b] for a, b in zip(q.tolist(), qe.tolist(), strict=True)]
    fast_rows = fast_rows_arr
    parsed = _read_matrix(conf_spans) if conf_spans else None
    rows = fast_rows.astype(np.int64)
    matrix = np.zeros((0, 0))
    off_width = np.zeros(0, dtype=bool)
    if parsed is None:
        slow_rows = sorted(slow_rows + fast_rows.tolist())
        rows, ids = np.zeros(0, dtype=np.int64), []
    else:
        matrix, off_width = parsed
    bad: list[BadRecord] = []
    if matrix.shape[0]:
        # Rows the matrix cannot hold exactly (other widths, NaN) are re-read by json.loads.
        unclear = off_width | np.isnan(matrix).any(axis=1) | np.isinf(matrix).any(axis=1)
        negative = np.asarray((matrix < 0).any(axis=1)) & ~unclear
        wrong_sum = (np.abs(matrix.sum(axis=1) - 1.0) > SUM_TOLERANCE) & ~unclear & ~negative
        for i in np.flatnonzero(negative | wrong_sum):
            reason = "negative value" if negative[i] else f"sums to {matrix[i].sum():.4g}, not 1"
            bad.append(
                BadRecord(source, first_line + int(rows[i]), "prediction.confidences", reason)
            )
        slow_rows.extend(rows[unclear].tolist())
        good = ~(unclear | negative | wrong_sum)
        if not good.all():
            ids = [x for x, g in zip(ids, good.tolist(), strict=True) if g]
            rows, matrix = rows[good], matrix[good]
    hashes = _hash_bytes(ids)
    keys = _stable_keys(ids) if strategy == "random" else hashes
    scores = _scores(matrix, keys, strategy=strategy, seed=seed) if rows.size else np.zeros(0)

    extra_rows: list[int] = []
    extra_contents: list[bytes] = []
    extra_conf: list[list[float]] = []
    for i in sorted(slow_rows):
        line = buf[offsets[i] : offsets[i + 1]].rstrip(b"\r\n")
        if not line.strip():
            continue  # blank lines are not records
        try:
            content, conf, _names = parse_line(line)
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            bad.append(BadRecord(source, first_line + i, field, reason))
            continue
        extra_rows.append(i)
        extra_contents.append(content.encode("utf-8"))
        extra_conf.append(conf)
    if extra_rows:
        extra_hashes = _hash_bytes(extra_contents)
        extra_keys = _stable_keys(extra_contents) if strategy == "random" else extra_hashes
        extra_scores = np.zeros(len(extra_rows))
        # Score the json-read rows in groups of equal width (vectorized per group).
        widths = np.fromiter((len(c) for c in extra_conf), dtype=np.int64, count=len(extra_conf))
        for w in np.unique(widths):
            members = np.flatnonzero(widths == w)
            group = np.asarray([extra_conf[m] for m in members], dtype=np.float64)
            extra_scores[members] = _scores(
                group, extra_keys[members], strategy=strategy, seed=seed
            )
        rows = np.concatenate([rows, np.asarray(extra_rows, dtype=np.int64)])
        hashes = np.concatenate([hashes, extra_hashes])
        scores = np.concatenate([scores, extra_scores])
        order = np.argsort(rows, kind="stable")
        rows, hashes, scores = rows[order], hashes[order], scores[order]
    bad.sort(key=lambda r: r.line)
    ends = offsets[rows + 1] - 1
    return _Block(
        line_numbers=first_line + rows,
        hashes=hashes,
        scores=scores,
        starts=offsets[rows],
        ends=ends,
        bad=bad,
    )


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
def _open_binary(uri: str) -> Iterator[IO[bytes]]:
    if storage.is_gcs(uri):
        bucket, name = storage.split_gcs(uri)
        with storage.gcs_client().bucket(bucket).blob(name).open("rb") as fh:
            yield fh
        return
    with storage.local_path(uri).open("rb") as fh:
        yield fh


def iter_blocks(uri: str, *, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, bytes]]:
    """Yield `(first_line_number, bytes)` blocks of whole lines of a file."""
    line = 1
    rest = b""
    with _open_binary(uri) as fh:
        while True:
            data = fh.read(block_bytes)
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            block, rest = data[: cut + 1], data[cut + 1 :]
            yield line, block
            line += block.count(b"\n")
    if rest:
        yield line, rest


# --------------------------------------------------------------------------- selection


@dataclasses.dataclass(frozen=True)
class SelectedPrediction:
    """One selected item: its id, score, predicted label and where it was read."""

    item: str
    score: float
    predicted: str
    source: str
    line: int
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
    if content.startswith(("gs://", "/", "file://", "./", "http://", "https://")):
        return content
    return text_item_id(content)


def _top(scores: np.ndarray, order_key: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores; ties by smaller order_key. Partial selection."""
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    # Equal scores at the cut: argpartition picks arbitrarily; take every tie and re-cut.
    if k < n:
        cut = scores[part].min()
        tied = np.flatnonzero(scores == cut)
        part = np.concatenate([part[scores[part] > cut], tied])
    order = np.lexsort((order_key[part], -scores[part]))
    return part[order][:k].astype(np.int64)


def select_from_predictions(
    uri: str,
    k: int,
    *,
    strategy: str,
    seed: int = 0,
    exclude_ids: Iterable[str] = (),
    labels: Sequence[str] | None = None,
    class_balance: bool = False,
    block_bytes: int = BLOCK_BYTES,
    max_bad_kept: int = MAX_BAD_KEPT,
) -> PredictionSelection:
    """Stream prediction files and pick `k` items to label next.

    Uncertainty strategies and random keep a running top-k; batch-aware strategies (and class
    balancing) keep the `CANDIDATE_FACTOR * k` smallest-margin items and re-rank those on their
    probability vectors. Duplicate items (same `instance.content`) after the first are bad records.

    Args:
        uri: A predictions JSONL, or a Vertex batch-prediction output folder / `gs://` prefix.
        k: How many items to select.
        strategy: One of `strategies.STRATEGIES`.
        seed: Seed of `random` (a per-item draw, so the sample does not depend on file order)
            and of the batch-aware re-ranking.
        exclude_ids: Item ids never selected (already labeled or queued); they count as excluded,
            not as pool.
        labels: The label set (column order of `confidences` in the output); default: the
            display names seen in the selected lines, sorted.
        class_balance: Spread the picks evenly over predicted classes.
        block_bytes: Read size; memory per block is a small multiple of it.
        max_bad_kept: Bad records kept for the report (all are counted).

    Raises:
        InputError: Unknown strategy, or no prediction files at `uri`.
    """
    if strategy not in strategies.STRATEGIES:
        raise InputError(
            f"unknown strategy {strategy!r}; expected one of {', '.join(strategies.STRATEGIES)}",
            field="strategy",
        )
    files = prediction_files(uri)
    batch_aware = strategy in strategies.NEEDS_FEATURES or class_balance
    keep = k * CANDIDATE_FACTOR if batch_aware else k
    excluded_hashes = np.unique(hash_ids(exclude_ids))
    seen = _SeenHashes()
    best_scores = np.zeros(0)
    best_keys = np.zeros(0, dtype=np.int64)
    best_lines: list[tuple[str, int, bytes]] = []
    histogram = np.zeros(HISTOGRAM_EDGES.shape[0] - 1, dtype=np.int64)
    pool = excluded = bad_count = 0
    bad: list[BadRecord] = []
    for file_index, file_uri in enumerate(files):
        for first_line, buf in iter_blocks(file_uri, block_bytes=block_bytes):
            block = _parse_block(
                buf, source=file_uri, first_line=first_line, strategy=strategy, seed=seed
            )
            bad_count += len(block.bad)
            bad.extend(block.bad[: max(0, max_bad_kept - len(bad))])
            # Duplicates: within the block (first wins) and against earlier blocks.
            _, first_idx = np.unique(block.hashes, return_index=True)
            dup = np.ones(block.hashes.shape[0], dtype=bool)
            dup[first_idx] = False
            dup |= seen.contains(block.hashes)
            for i in np.flatnonzero(dup):
                bad_count += 1
                if len(bad) < max_bad_kept:
                    bad.append(
                        BadRecord(
                            file_uri,
                            int(block.line_numbers[i]),
                            "instance.content",
                            "duplicate item",
                        )
                    )
            seen.add(block.hashes[~dup])
            unique = ~dup
            is_excluded = np.zeros(unique.shape[0], dtype=bool)
            if excluded_hashes.size:
                is_excluded = np.isin(block.hashes, excluded_hashes) & unique
            excluded += int(is_excluded.sum())
            eligible = np.flatnonzero(unique & ~is_excluded)
            pool += int(eligible.shape[0])
            scores = block.scores[eligible]
            histogram += np.histogram(np.clip(scores, 0.0, 1.0), bins=HISTOGRAM_EDGES)[0]
            # Global order key: (file, line) packed into one int for tie-breaking.
            keys = (file_index << 40) + block.line_numbers[eligible]
            local = _top(scores, keys, keep)
            if best_scores.shape[0] == keep:
                # Only lines that can still enter the running top are kept (ties: later lines
                # lose, so strictly better scores only).
                local = local[scores[local] > best_scores[-1]]
            rows = eligible[local]
            starts, ends, numbers = (
                block.starts[rows].tolist(),
                block.ends[rows].tolist(),
                block.line_numbers[rows].tolist(),
            )
            candidates = [
                (file_uri, number, buf[a:b])
                for number, a, b in zip(numbers, starts, ends, strict=True)
            ]
            merged_scores = np.concatenate([best_scores, scores[local]])
            merged_keys = np.concatenate([best_keys, keys[local]])
            merged_lines = best_lines + candidates
            top = _top(merged_scores, merged_keys, keep)
            best_scores, best_keys = merged_scores[top], merged_keys[top]
            best_lines = [merged_lines[i] for i in top]
    if bad_count:
        log.warning(
            "%d bad prediction line(s); first: %s", bad_count, "; ".join(str(r) for r in bad[:3])
        )
    items, label_list = _finish(
        best_lines,
        best_scores,
        k,
        strategy=strategy,
        seed=seed,
        labels=labels,
        class_balance=class_balance,
    )
    return PredictionSelection(
        items=items,
        strategy=strategy,
        pool=pool,
        excluded=excluded,
        bad_records=bad_count,
        bad=bad,
        pool_histogram={"counts": histogram.tolist(), "edges": HISTOGRAM_EDGES.tolist()},
        labels=label_list,
    )


def _parse_valid(raw: bytes) -> tuple[str, list[float], list[str]]:
    """Decode a line the reader already accepted (no re-validation)."""
    row = json.loads(raw)
    instance = row.get("instance")
    content = instance.get("content", instance.get("key")) if isinstance(instance, dict) else None
    if not isinstance(content, str):
        content = instance if isinstance(instance, str) else str(row.get("key"))
    conf = [float(v) for v in row["prediction"]["confidences"]]
    names = row["prediction"].get("displayNames")
    if not isinstance(names, list) or len(names) != len(conf):
        names = [str(i) for i in range(len(conf))]
    return content, conf, [str(n) for n in names]


def _finish(
    lines: list[tuple[str, int, bytes]],
    scores: np.ndarray,
    k: int,
    *,
    strategy: str,
    seed: int,
    labels: Sequence[str] | None,
    class_balance: bool,
) -> tuple[list[SelectedPrediction], list[str]]:
    """Decode the kept lines and, for batch-aware strategies, re-rank them down to `k`."""
    parsed = [_parse_valid(raw) for _, _, raw in lines]
    names = sorted({n for _, _, ns in parsed for n in ns}) if labels is None else list(labels)
    if strategy in strategies.NEEDS_FEATURES or class_balance:
        column = {n: j for j, n in enumerate(names)}
        proba = np.zeros((len(parsed), len(names)))
        for i, (_, conf, ns) in enumerate(parsed):
            for name, value in zip(ns, conf, strict=True):
                if name in column:
                    proba[i, column[name]] = value
        # The probability vectors are the embedding: near-identical predictions cluster.
        chosen = strategies.select(
            strategy if strategy in strategies.NEEDS_FEATURES else "margin",
            k,
            seed=seed,
            proba=proba,
            features=proba,
            class_balance=class_balance,
        ).indices
    else:
        chosen = np.arange(min(k, len(parsed)))
    out = []
    for i in chosen:
        content, conf, ns = parsed[int(i)]
        source, line, _ = lines[int(i)]
        predicted = ns[conf.index(max(conf))] if conf else ""
        out.append(
            SelectedPrediction(
                item=item_id(content),
                score=float(scores[int(i)]),
                predicted=predicted,
                source=source,
                line=line,
                confidences={n: float(v) for n, v in zip(ns, conf, strict=True)},
                content=content,
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
