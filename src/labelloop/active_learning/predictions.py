"""Stream Vertex AI batch-prediction output and select the next batch in bounded memory.

Vertex writes `prediction.results-NNNNN-of-NNNNN` files under its output directory; each line is
`{"instance": {"content": URI or text, "mimeType": ...}, "prediction": {"ids": [...],
"displayNames": [...], "confidences": [...]}}`; `write_predictions` writes a file of that shape
(any model's scores, e.g. for `predictions_uri`). The portable pipeline's own model does not go
through this reader: `stages/select_for_labeling.py` scores the pool with it in memory.

Speed: files are read in blocks of whole lines (32 MiB; a local file is mapped, not copied).
The compiled scanner (`scanner.scan`, numba, two threads) reads each block once: it finds the
`"content"` string (hashed on the fly, no Python object per line) and the `"confidences"` list
(parsed straight into a float array, with each line's min, sum and two largest values) and gives
each line a status. Checks (negative values, sums) and scores are then numpy over the whole
block. A line the scanner cannot vouch for (a key missing or repeated, escapes in the id, a
value that is not a plain JSON number, NaN, a sum within rounding of the tolerance) goes through
`json.loads` and the same checks, so the answer does not depend on which path read a line. The
fast path reads only those two fields: it does not re-validate the rest of a line (a line cut
short after its confidences still counts).

Numbers are parsed correctly rounded (as `float()`) when the mantissa fits in 53 bits; longer
ones (e.g. `repr` of a float64) within a few ulps. The running top keeps a few spare candidates
and the kept lines are re-read exactly at the end (`float()` for those numbers, `json.loads`
for any line the scanner doubts), so the selection equals the exact one.

Memory: per block a small multiple of the block size; across the pool only the running top
candidates and one 64-bit hash per item (to find duplicates): about 8 bytes per pool item.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import gc
import itertools
import json
import logging
import math
import mmap
import os
import re
import tempfile
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np

from labelloop import storage
from labelloop.active_learning import scanner, strategies
from labelloop.errors import BadRecord, InputError
from labelloop.schemas import text_item_id

log = logging.getLogger(__name__)

VERTEX_RESULTS_PREFIX = "prediction.results-"
SUM_TOLERANCE = 0.01
BLOCK_BYTES = 32 << 20
MAX_BAD_KEPT = 10_000
HISTOGRAM_EDGES = np.linspace(0.0, 1.0, 11)
# Batch-aware strategies and class balancing re-rank this many times k best-by-margin candidates.
CANDIDATE_FACTOR = 10
# Spare candidates kept beyond k, re-ranked with exactly parsed confidences at the end.
SPARE_CANDIDATES = 64
# Blocks at least this big are scanned in parts on threads, one per core (at most 4).
PARALLEL_MIN_BYTES = 1 << 20

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
    """FNV-1a 64 per byte string: the hash the scanner computes, stable across processes.

    Used for duplicates, exclusions and random's per-item draw. Two different ids collide
    with probability about n**2 / 2**64 (3e-6 for 10M items).
    """
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    data = np.frombuffer(b"".join(values), dtype=np.uint8)
    return np.asarray(scanner.fnv1a(data, offsets), dtype=np.uint64)


def hash_ids(ids: Iterable[str]) -> np.ndarray:
    """The hash the reader gives an instance's `content` (for exclusion lists)."""
    return _hash_bytes([s.encode("utf-8") for s in ids])


class _SeenHashes:
    """A set of uint64 hashes (linear probing, load at most 0.7): about 11 bytes per item."""

    def __init__(self) -> None:
        self.table = np.zeros(1 << 16, dtype=np.uint64)
        self.count = 0

    def insert(self, h: np.ndarray) -> np.ndarray:
        """Add `h` in order; True where a hash was already there (earlier or in `h`)."""
        need = self.count + h.shape[0]
        if need > 0.7 * self.table.shape[0]:
            size = self.table.shape[0]
            while need > 0.7 * size:
                size *= 2
            old = self.table[self.table != 0]
            self.table = np.zeros(size, dtype=np.uint64)
            scanner.insert_hashes(self.table, old, np.zeros(old.shape[0], dtype=np.bool_))
        dup = np.zeros(h.shape[0], dtype=np.bool_)
        self.count += scanner.insert_hashes(self.table, h, dup)
        return dup


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
    lines: int  # lines in the block, blank ones included


class _Scratch:
    """Scanner output arrays, kept across blocks so their pages are touched once."""

    def __init__(self) -> None:
        self.values = np.zeros(0)
        self.rows = scanner.alloc_lines(1 << 16)

    def scan(self, raw: np.ndarray, start: int, end: int) -> tuple[int, int]:
        """Scan the lines of `raw[start:end]`; returns (lines, values) held in the arrays."""
        # Every number takes at least two bytes ("0," or "0]").
        if self.values.shape[0] < (end - start) // 2 + 1:
            self.values = np.empty((end - start) // 2 + 1)
        lines = values = 0
        pos = start
        while pos < end:
            if lines == self.rows.status.shape[0]:
                bigger = scanner.alloc_lines(2 * lines)
                for dst, src in zip(bigger, self.rows, strict=True):
                    dst[:lines] = src[:lines]
                self.rows = bigger
            rows = scanner.Lines._make(a[lines:] for a in self.rows)
            got, nv, pos = scanner.scan(raw, pos, end, self.values[values:], rows)
            self.rows.vstart[lines : lines + got] += values
            lines += got
            values += nv
        return lines, values


@dataclasses.dataclass
class _Scanned:
    """The scanner's output for a whole block (see `scanner.scan`)."""

    rows: scanner.Lines  # one row per line
    values: np.ndarray  # the lines' values, one after the other (`rows.vstart` says where)


class _Scanner:
    """Scans a block in parts (cut at newlines) on threads: the compiled scan releases the GIL."""

    def __init__(self, pool: concurrent.futures.ThreadPoolExecutor | None, parts: int) -> None:
        self.pool = pool
        self.scratch = [_Scratch() for _ in range(parts)]

    def scan(self, raw: np.ndarray) -> _Scanned:
        if raw.flags.writeable:
            # Read-only whatever the source (a mapping is, a read buffer is not): numba
            # compiles, and caches (e.g. in the image), one scanner per array type.
            raw = raw.view()
            raw.flags.writeable = False
        parts = len(self.scratch) if raw.shape[0] >= PARALLEL_MIN_BYTES else 1
        bounds = [0]
        for p in range(1, parts):
            cut = int(raw.shape[0] * p // parts)
            nl = np.flatnonzero(raw[max(cut, bounds[-1]) :][: 1 << 20] == 10)
            if nl.shape[0]:
                bounds.append(max(cut, bounds[-1]) + int(nl[0]) + 1)
        bounds.append(raw.shape[0])
        pieces = list(itertools.pairwise(bounds))
        used = self.scratch[: len(pieces)]
        if self.pool is not None and len(pieces) > 1:
            counts = list(self.pool.map(lambda sc, piece: sc.scan(raw, *piece), used, pieces))
        else:
            counts = [sc.scan(raw, *piece) for sc, piece in zip(used, pieces, strict=True)]
        lines = [n for n, _ in counts]
        nvs = [nv for _, nv in counts]
        v_offsets = np.cumsum([0, *nvs])

        def join(field: str) -> np.ndarray:
            arrays = [getattr(sc.rows, field)[:n] for sc, n in zip(used, lines, strict=True)]
            if field == "vstart":  # each part's values come after the previous parts'
                arrays = [a + d for a, d in zip(arrays, v_offsets, strict=False)]
            return np.concatenate(arrays)

        return _Scanned(
            rows=scanner.Lines._make(join(field) for field in scanner.Lines._fields),
            values=np.concatenate([sc.values[:nv] for sc, nv in zip(used, nvs, strict=True)]),
        )


def _scores(conf: np.ndarray, keys: np.ndarray, *, strategy: str, seed: int) -> np.ndarray:
    """Per-line scores: uncertainty, or a seeded uniform draw keyed by the item (random)."""
    if strategy == "random":
        keyed = _mix(keys ^ _mix(np.asarray([seed & _MASK64], dtype=np.uint64)))
        return (keyed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return strategies.uncertainty(conf, strategy=_uncertainty_name(strategy))


def _uncertainty_name(strategy: str) -> str:
    """The score a strategy ranks lines by: its own, or margin (the prefilter of batch-aware
    strategies and of class balancing)."""
    return strategy if strategy in strategies.SCORERS else "margin"


def _block_scores(
    values: np.ndarray,
    vstart: np.ndarray,
    vcount: np.ndarray,
    stats: np.ndarray,
    keys: np.ndarray,
    *,
    strategy: str,
    seed: int,
) -> np.ndarray:
    """`_scores_ragged` of the scanner's lines; least confidence and margin (also the
    prefilter of batch-aware strategies) from the per-line largest values it keeps."""
    name = "random" if strategy == "random" else _uncertainty_name(strategy)
    if name == "least_confidence":
        return strategies.least_confidence_from_top(stats[:, 2])
    if name == "margin" and (vcount >= 2).all():
        return strategies.margin_from_top2(stats[:, 2], stats[:, 3])
    return _scores_ragged(values, vstart, vcount, keys, strategy=strategy, seed=seed)


def _scores_ragged(
    values: np.ndarray,
    starts: np.ndarray,
    widths: np.ndarray,
    keys: np.ndarray,
    *,
    strategy: str,
    seed: int,
) -> np.ndarray:
    """`_scores` of rows `values[starts[i]:starts[i] + widths[i]]`, one matrix per width."""
    out = np.zeros(starts.shape[0])
    if not out.shape[0]:
        return out
    w = int(widths[0])
    same = widths == w
    if values.shape[0] == w * out.shape[0] and starts[0] == 0 and same.all():
        # One width and the rows tile `values`: a reshape, no gather.
        return _scores(values.reshape(-1, w), keys, strategy=strategy, seed=seed)
    # Usually nearly all rows share the first row's width: no sort of all widths for that.
    for width in [w, *np.unique(widths[~same]).tolist()]:
        members = np.flatnonzero(widths == width)
        matrix = scanner.gather_rows(values, starts[members], int(width))
        out[members] = _scores(matrix, keys[members], strategy=strategy, seed=seed)
    return out


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


def _parse_block(
    buf: bytes | memoryview,
    *,
    source: str,
    first_line: int,
    strategy: str,
    seed: int,
    scanned: _Scanned,
) -> _Block:
    """Score the lines of one block; bad lines become `BadRecord`s with their line numbers."""
    per_line = scanned.rows
    n = per_line.status.shape[0]
    status, values = per_line.status, scanned.values
    fast = np.flatnonzero(status <= scanner.APPROX)
    vstart, vcount = per_line.vstart[fast], per_line.vcount[fast]
    hashes = per_line.chash[fast]
    stats = per_line.stats[fast]
    bad: list[BadRecord] = []
    slow = np.flatnonzero(status == scanner.SLOW)
    scores = _block_scores(values, vstart, vcount, stats, hashes, strategy=strategy, seed=seed)
    if fast.shape[0]:
        # Validity checks per line from the scanner's per-line min and sum.
        negative = stats[:, 0] < 0
        total = stats[:, 1]
        off = np.abs(total - 1.0)
        # Sums within rounding of the tolerance are left to the exact (json) path.
        borderline = np.abs(off - SUM_TOLERANCE) < 1e-9
        wrong_sum = (off > SUM_TOLERANCE) & ~negative & ~borderline
        for i in np.flatnonzero((negative | wrong_sum) & ~borderline):
            reason = "negative value" if negative[i] else f"sums to {total[i]:.4g}, not 1"
            bad.append(
                BadRecord(source, first_line + int(fast[i]), "prediction.confidences", reason)
            )
        good = ~(negative | wrong_sum | borderline)
        if borderline.any():
            slow = np.sort(np.concatenate([slow, fast[borderline]]))
        fast, hashes, scores = fast[good], hashes[good], scores[good]
    rows = fast.astype(np.int64)

    # The rest (escapes, other layouts, invalid lines) goes through json.loads.
    extra_rows: list[int] = []
    extra_contents: list[bytes] = []
    extra_conf: list[list[float]] = []
    line_start, line_end = per_line.start, per_line.end
    for i in slow.tolist():
        line = bytes(buf[line_start[i] : line_end[i]])
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
        widths = np.fromiter(map(len, extra_conf), dtype=np.int64, count=len(extra_conf))
        flat = np.fromiter(
            (v for c in extra_conf for v in c), dtype=np.float64, count=int(widths.sum())
        )
        starts = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
        extra_scores = _scores_ragged(
            flat, starts, widths, extra_hashes, strategy=strategy, seed=seed
        )
        rows = np.concatenate([rows, np.asarray(extra_rows, dtype=np.int64)])
        hashes = np.concatenate([hashes, extra_hashes])
        scores = np.concatenate([scores, extra_scores])
        order = np.argsort(rows, kind="stable")
        rows, hashes, scores = rows[order], hashes[order], scores[order]
    bad.sort(key=lambda r: r.line)
    return _Block(
        line_numbers=first_line + rows,
        hashes=hashes,
        scores=scores,
        starts=line_start[rows],
        ends=line_end[rows],
        bad=bad,
        lines=n,
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


def _read_blocks(
    uri: str, *, block_bytes: int = BLOCK_BYTES, buffers: int = 1
) -> Generator[memoryview, None, None]:
    """Yield blocks of whole lines of a file (the last one may lack its newline).

    A local file is mapped a window at a time (no copy: the scanner reads the page cache);
    the window is unmapped when nothing refers to its block any more. Otherwise `buffers`
    buffers are reused in turn (read into, the partial last line moved to the front of the
    next), so their pages are touched once; a block stays valid until `buffers` more blocks
    have been asked for.
    """
    if not storage.is_gcs(uri):
        yield from _mapped_blocks(storage.local_path(uri), block_bytes=block_bytes)
        return
    bufs = [bytearray(block_bytes) for _ in range(buffers)]
    current = 0
    buf = bufs[0]
    filled = 0
    bucket, name = storage.split_gcs(uri)
    with storage.gcs_client().bucket(bucket).blob(name).open("rb") as fh:
        while True:
            if filled == len(buf):  # a line longer than the buffer: grow it
                bigger = bytearray(2 * len(buf))
                bigger[:filled] = buf[:filled]
                buf = bufs[current] = bigger
            with memoryview(buf) as view:
                got = fh.readinto(view[filled:])
            if not got:
                break
            filled += got
            cut = buf.rfind(b"\n", 0, filled)
            if cut < 0:
                continue
            with memoryview(buf) as view:
                yield view[: cut + 1]
            rest = filled - cut - 1
            current = (current + 1) % buffers
            if len(bufs[current]) < len(buf):
                bufs[current] = bytearray(len(buf))
            bufs[current][:rest] = buf[cut + 1 : filled]
            buf = bufs[current]
            filled = rest
    if filled:
        with memoryview(buf) as view:
            yield view[:filled]


def _mapped_blocks(path: os.PathLike[str], *, block_bytes: int) -> Iterator[memoryview]:
    """Blocks of whole lines of a local file, each a view of its own read-only mapping.

    Windows of about `block_bytes` (the first an eighth of it) start at a line start (mapped
    from the page boundary before it) and end after their last newline; a line longer than the
    window doubles it. Resident memory is what the live blocks touched, as with read buffers.
    (A file truncated while it is read ends the process with SIGBUS, as any mapped read does.)
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        start = 0  # the next block's first byte: a line start
        # A small first block: the pipeline (scan the next block while this one is merged)
        # starts working sooner.
        window = max(1, block_bytes // 8)
        while start < size:
            at = start - start % mmap.ALLOCATIONGRANULARITY
            length = min(size - at, start - at + window)
            mapped = mmap.mmap(fh.fileno(), length, offset=at, access=mmap.ACCESS_READ)
            lo = start - at
            cut = length - 1 if at + length == size else mapped.rfind(b"\n", lo, length)
            if cut < 0:
                window *= 2
                mapped.close()
                continue
            with contextlib.suppress(AttributeError, OSError):  # advice only (not on all OSes)
                mapped.madvise(mmap.MADV_SEQUENTIAL)
            block = memoryview(mapped)[lo : cut + 1]
            del mapped  # the block holds the mapping; it is unmapped with the block's last view
            yield block
            start = at + cut + 1
            window = max(window, block_bytes)


def _scanned_blocks(
    uri: str,
    *,
    block_bytes: int,
    scanner: _Scanner,
    reader: concurrent.futures.ThreadPoolExecutor,
) -> Iterator[tuple[memoryview, _Scanned]]:
    """Blocks and their scans; the next block is read and scanned while this one is used."""
    blocks = _read_blocks(uri, block_bytes=block_bytes, buffers=2)

    def step() -> tuple[memoryview, _Scanned] | None:
        buf = next(blocks, None)
        return None if buf is None else (buf, scanner.scan(np.frombuffer(buf, dtype=np.uint8)))

    pending = reader.submit(step)
    try:
        while (item := pending.result()) is not None:
            pending = reader.submit(step)
            yield item
    finally:
        pending.cancel()
        concurrent.futures.wait([pending])
        blocks.close()


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


def _histogram(scores: np.ndarray) -> np.ndarray:
    """Counts of `scores` (clipped to [0, 1]) in the bins of `HISTOGRAM_EDGES` (last closed)."""
    x = np.clip(scores, 0.0, 1.0)
    bins = HISTOGRAM_EDGES.shape[0] - 1
    idx = np.minimum((x * bins).astype(np.int64), bins - 1)
    # Rounding in x * bins can land one bin off at an edge: compare with the edges themselves.
    idx -= x < HISTOGRAM_EDGES[idx]
    idx += (x >= HISTOGRAM_EDGES[idx + 1]) & (idx < bins - 1)
    return np.bincount(idx, minlength=bins)


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


def _usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_P = ParamSpec("_P")
_R = TypeVar("_R")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (restored after, if it was on).

    The selection makes many short-lived objects and no reference cycles; each full collection
    would re-walk every object of the process (numba alone holds hundreds of thousands).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _without_gc(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with _gc_paused():
            return fn(*args, **kwargs)

    return run


@_without_gc
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
    batch_aware = strategies.needs_features(strategy) or class_balance
    keep = k * CANDIDATE_FACTOR if batch_aware else k
    excluded_hashes = np.unique(hash_ids(exclude_ids))
    seen = _SeenHashes()
    best_scores = np.zeros(0)
    best_keys = np.zeros(0, dtype=np.int64)
    best_lines: list[tuple[str, int, bytes]] = []
    histogram = np.zeros(HISTOGRAM_EDGES.shape[0] - 1, dtype=np.int64)
    pool = excluded = bad_count = 0
    bad: list[BadRecord] = []
    parts = max(1, min(4, _usable_cpus()))
    threads = concurrent.futures.ThreadPoolExecutor(parts) if parts > 1 else None
    scanner = _Scanner(threads, parts)
    reader = concurrent.futures.ThreadPoolExecutor(1)
    # Approximate scores (long mantissas) can swap near-ties: keep spares, re-rank at the end.
    kept = keep + SPARE_CANDIDATES
    try:
        for file_index, file_uri in enumerate(files):
            first_line = 1
            for buf, scanned in _scanned_blocks(
                file_uri, block_bytes=block_bytes, scanner=scanner, reader=reader
            ):
                block = _parse_block(
                    buf,
                    source=file_uri,
                    first_line=first_line,
                    strategy=strategy,
                    seed=seed,
                    scanned=scanned,
                )
                first_line += block.lines
                bad_count += len(block.bad)
                bad.extend(block.bad[: max(0, max_bad_kept - len(bad))])
                # Duplicates: within the block (first wins) and against earlier blocks.
                dup = seen.insert(block.hashes)
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
                unique = ~dup
                is_excluded = np.zeros(unique.shape[0], dtype=bool)
                if excluded_hashes.size:
                    is_excluded = np.isin(block.hashes, excluded_hashes) & unique
                excluded += int(is_excluded.sum())
                eligible = np.flatnonzero(unique & ~is_excluded)
                pool += int(eligible.shape[0])
                scores = block.scores[eligible]
                histogram += _histogram(scores)
                # Global order key: (file, line) packed into one int for tie-breaking.
                keys = (file_index << 40) + block.line_numbers[eligible]
                if best_scores.shape[0] == kept:
                    # Only lines that can still enter the running top are kept (ties: later lines
                    # lose, so strictly better scores only). They are a prefix of the block's
                    # order, so filtering first picks the same lines.
                    entrants = np.flatnonzero(scores > best_scores[-1])
                    local = entrants[_top(scores[entrants], keys[entrants], kept)]
                else:
                    local = _top(scores, keys, kept)
                rows = eligible[local]
                held = best_scores.shape[0]
                merged_scores = np.concatenate([best_scores, scores[local]])
                merged_keys = np.concatenate([best_keys, keys[local]])
                top = _top(merged_scores, merged_keys, kept)
                best_scores, best_keys = merged_scores[top], merged_keys[top]
                # Copy a line's bytes only once it has entered the running top.
                entered = top[top >= held] - held
                added = {
                    int(j): (file_uri, int(number), bytes(buf[a:b]))
                    for j, number, a, b in zip(
                        entered.tolist(),
                        block.line_numbers[rows[entered]].tolist(),
                        block.starts[rows[entered]].tolist(),
                        block.ends[rows[entered]].tolist(),
                        strict=True,
                    )
                }
                best_lines = [best_lines[i] if i < held else added[i - held] for i in top.tolist()]
    finally:
        reader.shutdown()
        if threads is not None:
            threads.shutdown()
    if bad_count:
        log.warning(
            "%d bad prediction line(s); first: %s", bad_count, "; ".join(str(r) for r in bad[:3])
        )
    items, label_list = _finish(
        best_lines,
        best_keys,
        k,
        keep=keep,
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


# A display-names list without `]` in its strings (json.loads reads the others' lines).
_NAMES_VALUE_RE = re.compile(rb"\s*:\s*(\[[^\]]*\])")


def _rescan(raws: list[bytes]) -> tuple[_Scanned, bytes]:
    """Scan `raws` (lines without newlines) again, recording the spans decoding needs.

    Returns:
        (the scan, with `rows.spans`; the lines joined by newlines).
    """
    joined = b"\n".join(raws) + b"\n"
    buf = np.frombuffer(joined, dtype=np.uint8)
    out = _Scanned(
        rows=scanner.alloc_lines(len(raws), spans=True), values=np.empty(buf.shape[0] // 2 + 1)
    )
    got, nv, _ = scanner.scan(buf, 0, buf.shape[0], out.values, out.rows)
    if got != len(raws):  # cannot happen: one line per raw
        raise ValueError(f"re-scan read {got} lines from {len(raws)}")
    out.values = out.values[:nv]
    return out, joined


def _decode_kept(raws: list[bytes]) -> list[tuple[str, list[float], list[str]]]:
    """`_parse_valid` of each line, without `json.loads` where the scanner reads the line.

    Lines the scanner reads (one plain `"content"` string, one list of plain numbers) take the
    content's text and the values from it (numbers it parses only approximately are read again
    with `float()`); the display names (usually one spelling on every line) are decoded once per
    spelling. Any doubt (a `]` in a display name, a repeated key) goes to `json.loads`.

    Args:
        raws: The lines, without their newlines.
    """
    if not raws:
        return []
    scanned, joined = _rescan(raws)
    values = scanned.values.tolist()
    # Decoded once per spelling / width; the lists are shared between lines (read only).
    names_cache: dict[bytes, list[str] | None] = {}
    default_names: dict[int, list[str]] = {}
    out = []
    for i, (st, v0, nv, (cs, ce, names_at, list_end)) in enumerate(
        zip(
            scanned.rows.status.tolist(),
            scanned.rows.vstart.tolist(),
            scanned.rows.vcount.tolist(),
            scanned.rows.spans.tolist(),
            strict=True,
        )
    ):
        decoded: tuple[str, list[float], list[str]] | None = None
        # A backslash anywhere (an escaped key?): json.loads decides.
        if st <= scanner.APPROX and names_at != -2 and b"\\" not in raws[i]:
            if st == scanner.EXACT:
                conf = values[v0 : v0 + nv]
            else:  # long mantissas: float() reads them exactly
                opening = joined.rfind(b"[", 0, list_end)
                conf = [float(t) for t in joined[opening + 1 : list_end].split(b",")]
            names: list[str] | None = None
            if names_at >= 0:
                match = _NAMES_VALUE_RE.match(joined, names_at)
                span = match.group(1) if match else b""
                if span not in names_cache:
                    try:
                        value = json.loads(span)
                    except ValueError:
                        value = None
                    names_cache[span] = [str(x) for x in value] if isinstance(value, list) else None
                names = names_cache[span]
            if names_at < 0 or (names is not None and len(names) != nv):
                if nv not in default_names:
                    default_names[nv] = [str(x) for x in range(nv)]
                names = default_names[nv]
            if names is not None:
                decoded = (joined[cs:ce].decode("utf-8"), conf, names)
        out.append(decoded if decoded is not None else _parse_valid(raws[i]))
    return out


def _finish(
    lines: list[tuple[str, int, bytes]],
    order_keys: np.ndarray,
    k: int,
    *,
    keep: int,
    strategy: str,
    seed: int,
    labels: Sequence[str] | None,
    class_balance: bool,
) -> tuple[list[SelectedPrediction], list[str]]:
    """Decode the kept lines, re-score them exactly, keep the best `keep` and, for batch-aware
    strategies, re-rank those down to `k`."""
    parsed = _decode_kept([raw for _, _, raw in lines])
    if parsed:
        widths = np.fromiter((len(c) for _, c, _ in parsed), dtype=np.int64, count=len(parsed))
        flat = np.fromiter(
            itertools.chain.from_iterable(c for _, c, _ in parsed),
            dtype=np.float64,
            count=int(widths.sum()),
        )
        starts = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
        hashes = (
            _hash_bytes([c.encode("utf-8") for c, _, _ in parsed])
            if strategy == "random"
            else np.zeros(len(parsed), dtype=np.uint64)
        )
        scores = _scores_ragged(flat, starts, widths, hashes, strategy=strategy, seed=seed)
        best = _top(scores, order_keys, keep)
        parsed = [parsed[int(i)] for i in best]
        lines = [lines[int(i)] for i in best]
        scores = scores[best]
    else:
        scores = np.zeros(0)
    if labels is None:
        # Most lines share one names list: collect the distinct lists first.
        names = sorted({n for ns in {tuple(ns) for _, _, ns in parsed} for n in ns})
    else:
        names = list(labels)
    if strategies.needs_features(strategy) or class_balance:
        column = {n: j for j, n in enumerate(names)}
        proba = np.zeros((len(parsed), len(names)))
        for i, (_, conf, ns) in enumerate(parsed):
            for name, value in zip(ns, conf, strict=True):
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
        chosen = np.arange(min(k, len(parsed)))
    out = []
    score_list = scores.tolist()
    for i in np.asarray(chosen, dtype=np.int64).tolist():
        content, conf, ns = parsed[i]
        source, line, _ = lines[i]
        predicted = ns[conf.index(max(conf))] if conf else ""
        out.append(
            SelectedPrediction(
                item=item_id(content),
                score=score_list[i],
                predicted=predicted,
                source=source,
                line=line,
                # Values are floats already (float() or json.loads, then float()).
                confidences=dict(zip(ns, conf, strict=True)),
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


def warm_up() -> int:
    """Compile (or load from numba's cache) every compiled function a selection can use.

    Runs small selections through each path: rows of two widths, escaped lines, every scoring
    route (mapped and read-buffer blocks share one compiled scanner: `_Scanner.scan` makes
    every block read-only). The image calls this at build time so that a pipeline task does
    not spend seconds compiling.

    Returns:
        The number of selections run.
    """
    ids = [f"gs://warm/{i}.png" for i in range(6)]
    proba = np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [0.1, 0.1, 0.8]] * 2)
    runs = 0
    with tempfile.TemporaryDirectory(prefix="labelloop-warm-") as tmp:
        path = os.path.join(tmp, "p.jsonl")
        write_predictions(path, ids, ["a", "b", "c"], proba)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write('{"instance": {"content": "gs://warm/two.png"}, ')
            fh.write('"prediction": {"confidences": [0.25, 0.75]}}\n')
            fh.write('{"instance": {"content": "gs://warm/\\u00e9.png"}, ')
            fh.write('"prediction": {"confidences": [0.30452949348101396, 0.69547050651898604]}}\n')
        for strategy in strategies.STRATEGIES:
            select_from_predictions(path, 3, strategy=strategy, exclude_ids=[ids[0]])
            runs += 1
    return runs
