"""The compiled (numba) reader of Vertex-format prediction lines: plain arrays in, arrays out.

`scan` gives each line of a block its span, a status, its `"confidences"` values (parsed into a
float array) and a hash (FNV-1a 64) of its `"content"` string.

It reads 64 bytes at a time into bit masks (quotes, newlines, backslashes, the letter `c`) and
stops only at newlines and at strings that start with `c`, where the two keys can be. Without
escapes every quote opens or closes a string, so the prefix XOR of the quote bits tells which
quotes open one (as simdjson does). A line with a backslash or an odd number of quotes, or
without exactly one of each key, is read byte by byte instead (`_walk_line`, which skips
strings escapes included); both readings give the same outputs for any line (tested).

A line is `SLOW` (json.loads decides) unless it holds exactly one `"content": "..."` string
without escapes or control characters and exactly one `"confidences": [...]` list of plain
JSON numbers. Numbers are `mantissa / 10**p`, correctly rounded (`EXACT`) when the mantissa is
at most 2**53 and |p| <= 22 (as `float()`), else within a few ulps (`APPROX`); more than 18
significant digits or |p| > 300 make the line `SLOW`. The scanner reads only those two fields:
it does not validate the rest of a line.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

# Line status.
EXACT, APPROX, SLOW, BLANK = 0, 1, 2, 3
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
_POW10 = np.array([10.0**i for i in range(23)])
_CONF_KEY = np.frombuffer(b'"confidences"', dtype=np.uint8).copy()
_CONTENT_KEY = np.frombuffer(b'"content"', dtype=np.uint8).copy()
_NAMES_KEY = np.frombuffer(b'"displayNames"', dtype=np.uint8).copy()
_DEBRUIJN = 0x03F79D71B4CB0A89
_DEBRUIJN_INDEX = np.zeros(64, dtype=np.int64)
for _i in range(64):
    _DEBRUIJN_INDEX[(((1 << _i) * _DEBRUIJN) & 0xFFFFFFFFFFFFFFFF) >> 58] = _i
_MAX_MANTISSA_DIV10 = 10**17  # m * 10 + d stays below 10**18


@numba.njit(cache=True, nogil=True)
def _at(buf: np.ndarray, i: int, n: int, key: np.ndarray) -> bool:  # pragma: no cover - compiled
    """Whether `buf[i:n]` starts with `key`."""
    if i + key.shape[0] > n:
        return False
    for j in range(key.shape[0]):  # noqa: SIM110 - compiled loop, no generator
        if buf[i + j] != key[j]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _skip_ws(buf: np.ndarray, i: int, n: int) -> int:  # pragma: no cover - compiled
    while i < n and (buf[i] == 32 or buf[i] == 9 or buf[i] == 13):
        i += 1
    return i


@numba.njit(cache=True, nogil=True, inline="always")
def _read_digits(
    buf: np.ndarray, k: int, n: int, m: int, d: int
) -> tuple[int, int, int, bool]:  # pragma: no cover - compiled
    """Append the digit `d` (read at `buf[k]`) and the digits after it to the mantissa `m`.

    Returns:
        (position after the digits, mantissa, digits read, False if the mantissa would pass
        18 significant digits and overflow: json.loads decides those numbers).
    """
    count = 0
    while True:
        if m >= _MAX_MANTISSA_DIV10:
            return k, m, count, False
        m = m * 10 + d
        count += 1
        k += 1
        if k >= n:
            break
        d = int(buf[k]) - 48
        if d < 0 or d > 9:
            break
    return k, m, count, True


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _parse_list(
    buf: np.ndarray, k: int, n: int, values: np.ndarray, nv: int
) -> tuple[int, int, bool, bool]:  # pragma: no cover - compiled
    """Parse `: [numbers]` from `buf[k]` (just after the key, before `n`) into `values[nv:]`.

    Returns:
        (position of the closing `]` or where parsing stopped, numbers written, whether any
        number is approximate, whether the list is well formed).
    """
    approx = False
    cnt = 0
    k = _skip_ws(buf, k, n)
    if k >= n or buf[k] != 58:
        return k, 0, False, False
    k = _skip_ws(buf, k + 1, n)
    if k >= n or buf[k] != 91:
        return k, 0, False, False
    k = _skip_ws(buf, k + 1, n)
    while k < n:
        neg = buf[k] == 45
        if neg:
            k += 1
        if k >= n:
            break
        d = int(buf[k]) - 48
        if d < 0 or d > 9:
            break
        if d == 0 and k + 1 < n and 48 <= buf[k + 1] <= 57:
            break  # leading zero: not JSON
        # Mantissa m (all digits), exponent p. More than 18 significant digits (m >= 10**18)
        # would overflow: json.loads decides those.
        k, m, _, ok = _read_digits(buf, k, n, 0, d)
        if not ok:
            break
        p = 0
        if k < n and buf[k] == 46:  # fraction digits
            k += 1
            d = int(buf[k]) - 48 if k < n else -1
            if d < 0 or d > 9:
                break  # "1." or "1.x": not JSON
            k, m, count, ok = _read_digits(buf, k, n, m, d)
            if not ok:
                break
            p = -count
        if k < n and (buf[k] == 101 or buf[k] == 69):
            k += 1
            eneg = False
            if k < n and (buf[k] == 45 or buf[k] == 43):
                eneg = buf[k] == 45
                k += 1
            if k >= n or buf[k] < 48 or buf[k] > 57:
                break
            ex = 0
            while k < n and 48 <= buf[k] <= 57:
                if ex < 10000:
                    ex = ex * 10 + (buf[k] - 48)
                k += 1
            p += -ex if eneg else ex
        if p > 300 or p < -300:
            break  # huge or tiny: json.loads decides
        # One correctly rounded operation on exact operands (as float() when m < 2**53);
        # otherwise within a few ulps, and the line is marked approximate.
        if p > 22 or p < -22:
            approx = True
            v = float(m) * 10.0**p
        elif p < 0:
            v = float(m) / _POW10[-p]
        else:
            v = float(m) * _POW10[p]
        if m > 9007199254740992:
            approx = True
        values[nv + cnt] = -v if neg else v
        cnt += 1
        k = _skip_ws(buf, k, n)
        if k < n and buf[k] == 44:
            k = _skip_ws(buf, k + 1, n)
            continue
        return k, cnt, approx, k < n and buf[k] == 93
    return k, cnt, approx, False


@numba.njit(cache=True, nogil=True)
def _parse_content(
    buf: np.ndarray, k: int, n: int
) -> tuple[int, np.uint64, bool, int]:  # pragma: no cover - compiled
    """Parse `: "string"` from `buf[k]` (just after the key); hash the string (FNV-1a).

    Returns:
        (position after the closing quote or where parsing stopped, hash, whether the string is
        non-empty and holds no escape or control character, where the string's text starts).
    """
    h = np.uint64(FNV_OFFSET)
    k = _skip_ws(buf, k, n)
    if k >= n or buf[k] != 58:
        return k, h, False, k
    k = _skip_ws(buf, k + 1, n)
    if k >= n or buf[k] != 34:
        return k, h, False, k
    k += 1
    cs = k
    while k < n and buf[k] != 34 and buf[k] != 92 and buf[k] >= 32:
        h = (h ^ np.uint64(buf[k])) * np.uint64(FNV_PRIME)
        k += 1
    if k < n and buf[k] == 34 and k > cs:
        return k + 1, h, True, cs
    return k, h, False, cs


@numba.njit(cache=True, nogil=True)
def _blank(buf: np.ndarray, s: int, e: int) -> bool:  # pragma: no cover - compiled
    for q in range(s, e):  # noqa: SIM110 - compiled loop, no generator
        if buf[q] != 32 and buf[q] != 9:
            return False
    return True


class Lines(NamedTuple):
    """What `scan` writes per line, row i for line i (arrays, so numba passes them in one)."""

    start: np.ndarray  # int64: where the line starts in the block
    end: np.ndarray  # int64: where it ends (before its newline and any \r)
    status: np.ndarray  # uint8: EXACT, APPROX, SLOW or BLANK
    vstart: np.ndarray  # int64: where its values start in `values`
    vcount: np.ndarray  # int64: how many values (0 unless EXACT or APPROX)
    chash: np.ndarray  # uint64: FNV-1a 64 of the content string (0 unless EXACT or APPROX)
    stats: np.ndarray  # (n, 4) float64: the values' min, sum, largest, second largest
    # (n, 4) int64, or (0, 4) to skip: where the content string's text starts and ends, where a
    # `"displayNames"` key ends (-1: none, -2: more than one), where the confidences' `]` is.
    spans: np.ndarray


def alloc_lines(n: int, *, spans: bool = False) -> Lines:
    """Uninitialized `Lines` for `n` lines; `spans` rows only when asked for."""
    return Lines(
        start=np.empty(n, dtype=np.int64),
        end=np.empty(n, dtype=np.int64),
        status=np.empty(n, dtype=np.uint8),
        vstart=np.empty(n, dtype=np.int64),
        vcount=np.empty(n, dtype=np.int64),
        chash=np.empty(n, dtype=np.uint64),
        stats=np.empty((n, 4)),
        spans=np.empty((n if spans else 0, 4), dtype=np.int64),
    )


@numba.njit(cache=True, nogil=True, inline="always")
def _write_line(  # noqa: PLR0917 - numba: plain values in
    out: Lines,
    line: int,
    s: int,
    e: int,
    st: int,
    values: np.ndarray,
    nv: int,
    cnt: int,
    h: np.uint64,
) -> None:  # pragma: no cover - compiled
    """Row `line` of `out` (the spans aside)."""
    out.start[line] = s
    out.end[line] = e
    out.status[line] = st
    out.vstart[line] = nv
    out.vcount[line] = cnt
    out.chash[line] = h
    _line_stats(values, nv, cnt, out.stats, line)


@numba.njit(cache=True, nogil=True, inline="always")
def _line_stats(
    values: np.ndarray, nv: int, cnt: int, stats: np.ndarray, line: int
) -> None:  # pragma: no cover - compiled
    """Row `line` of `stats`: min, sum (left to right), largest and second largest value."""
    lo = np.inf
    total = 0.0
    first = -np.inf
    second = -np.inf
    for i in range(nv, nv + cnt):
        v = values[i]
        lo = min(lo, v)
        total += v
        if v > first:
            second = first
            first = v
        elif v > second:
            second = v
    stats[line, 0] = lo
    stats[line, 1] = total
    stats[line, 2] = first
    stats[line, 3] = second


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _walk_line(  # noqa: PLR0917 - numba: plain values in
    buf: np.ndarray,
    s: int,
    n: int,
    values: np.ndarray,
    nv: int,
    line: int,
    out: Lines,
) -> tuple[int, int]:  # pragma: no cover - compiled
    """Read the line starting at `s` byte by byte (any line, escapes included); write row `line`.

    Returns:
        (position after the line's newline, values written).
    """
    record = out.spans.shape[0] > 0
    j = s
    st = EXACT
    nconf = 0
    ncont = 0
    cnt = 0
    h = np.uint64(FNV_OFFSET)
    cs = ce = names_at = list_end = -1
    nonblank = False
    while j < n and buf[j] != 10:
        if buf[j] == 34:  # a string: a key we want, or skipped whole
            nonblank = True
            if record and j + 1 < n and buf[j + 1] == 100 and _at(buf, j, n, _NAMES_KEY):
                names_at = j + _NAMES_KEY.shape[0] if names_at == -1 else -2
                j += _NAMES_KEY.shape[0]
                continue
            if st != SLOW and j + 1 < n and buf[j + 1] == 99:
                if _at(buf, j, n, _CONF_KEY):
                    nconf += 1
                    j, cnt, approx, ok = _parse_list(buf, j + 13, n, values, nv)
                    list_end = j
                    if not ok:
                        st = SLOW
                    elif approx:
                        st = APPROX
                    continue
                if _at(buf, j, n, _CONTENT_KEY):
                    ncont += 1
                    j, h, ok, cs = _parse_content(buf, j + 9, n)
                    ce = j - 1
                    if not ok:
                        st = SLOW
                    continue
            # Any other string: skip it, escapes included.
            j += 1
            while j < n and buf[j] != 34 and buf[j] != 10:
                if buf[j] == 92 and j + 1 < n and buf[j + 1] != 10:
                    j += 1
                j += 1
            if j < n and buf[j] == 34:
                j += 1
            continue
        j += 1
    e = j
    if e > s and buf[e - 1] == 13:
        e -= 1
    if not nonblank and _blank(buf, s, e):
        st = BLANK
    elif st != SLOW and (nconf != 1 or ncont != 1 or cnt == 0):
        st = SLOW
    if st >= SLOW:
        cnt = 0
        h = np.uint64(0)
    _write_line(out, line, s, e, st, values, nv, cnt, h)
    if record:
        out.spans[line, 0] = cs
        out.spans[line, 1] = ce
        out.spans[line, 2] = names_at
        out.spans[line, 3] = list_end
    return j + 1, cnt


@numba.njit(cache=True, nogil=True, inline="always")
def _lowest_bit_index(low: np.uint64) -> int:  # pragma: no cover - compiled
    """Index of the single set bit of `low` (de Bruijn multiplication)."""
    return _DEBRUIJN_INDEX[(low * np.uint64(_DEBRUIJN)) >> np.uint64(58)]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def scan(
    buf: np.ndarray,
    pos: int,
    end: int,
    values: np.ndarray,
    out: Lines,
) -> tuple[int, int, int]:  # pragma: no cover - compiled
    """Read the lines of `buf[pos:end]`.

    Args:
        buf: The block (positions in the outputs are indices into it).
        pos: Where the first line starts.
        end: Where the part ends (after a newline, or the end of the block).
        values: Receives the lines' values, one after the other (`out.vstart` says where).
        out: Receives one row per line (see `Lines`); with `out.spans` non-empty, every line
            is read byte by byte.

    Returns:
        (lines read, values written, position after the last line read). Stops early when the
        per-line arrays are full.
    """
    cap = out.status.shape[0]
    line = 0
    nv = 0
    if out.spans.shape[0] > 0 or cap == 0:
        j = pos
        while j < end and line < cap:
            j, cnt = _walk_line(buf, j, end, values, nv, line, out)
            nv += cnt
            line += 1
        return line, nv, min(j, end)
    nbuf = buf.shape[0]
    one = np.uint64(1)
    ones = np.uint64(0xFFFFFFFFFFFFFFFF)
    zero = np.uint64(0)
    # The line being read: where it starts, what was seen of it.
    s = pos
    walk = False  # a backslash, or an odd number of quotes: read it byte by byte
    nconf = ncont = 0
    conf_at = cont_at = skip_at = -1
    carry = zero  # all ones while inside a string at the end of the previous chunk
    c = pos >> 6
    last = (end - 1) >> 6
    while c <= last:
        base = c << 6
        # Bit i of each mask: byte base + i is a quote, newline, backslash, "c".
        q = nl = bs = cc = zero
        # A slice, indexed from 0: with no negative index possible the loop compiles to vector
        # compares and bit gathers (10x faster than indexing `buf[base + i]`).
        chunk = buf[base : base + 64]
        if chunk.shape[0] == 64:
            for i in range(64):
                b = chunk[i]
                sh = np.uint64(i)
                q |= np.uint64(b == 34) << sh
                nl |= np.uint64(b == 10) << sh
                bs |= np.uint64(b == 92) << sh
                cc |= np.uint64(b == 99) << sh
        else:
            for i in range(chunk.shape[0]):
                b = chunk[i]
                sh = np.uint64(i)
                q |= np.uint64(b == 34) << sh
                nl |= np.uint64(b == 10) << sh
                bs |= np.uint64(b == 92) << sh
                cc |= np.uint64(b == 99) << sh
        keep = ones
        if base < pos:
            keep &= ~((one << np.uint64(pos - base)) - one)
        if end - base < 64:
            keep &= (one << np.uint64(end - base)) - one
        q &= keep
        nl &= keep
        bs &= keep
        next_c = one if base + 64 < nbuf and buf[base + 64] == 99 else zero
        key = q & ((cc >> one) | (next_c << np.uint64(63)))
        # Without escapes every quote opens or closes a string: the prefix XOR of the quote
        # bits is 1 from an opening quote (included) to its closing quote (excluded).
        inside = q
        for k in (1, 2, 4, 8, 16, 32):
            inside ^= inside << np.uint64(k)
        inside ^= carry
        events = nl | (key & inside) | bs
        while events:
            low = events & (~events + one)
            events ^= low
            p = base + _lowest_bit_index(low)
            if nl & low:
                if inside & low:
                    # An odd number of quotes: the line is read byte by byte, and what follows
                    # it is outside any string again.
                    walk = True
                    from_here = ~(low - one)
                    inside ^= from_here
                    events = (nl | (key & inside) | bs) & from_here & ~low
                if walk or nconf != 1 or ncont != 1:
                    _, cnt = _walk_line(buf, s, p + 1, values, nv, line, out)
                else:
                    e = p
                    if e > s and buf[e - 1] == 13:
                        e -= 1
                    _, h, ok, _ = _parse_content(buf, cont_at + 9, p)
                    _, cnt, approx, ok_list = _parse_list(buf, conf_at + 13, p, values, nv)
                    st = EXACT
                    if not ok or not ok_list:
                        st = SLOW
                        cnt = 0
                        h = zero
                    elif approx:
                        st = APPROX
                    _write_line(out, line, s, e, st, values, nv, cnt, h)
                nv += cnt
                line += 1
                s = p + 1
                walk = False
                nconf = ncont = 0
                skip_at = -1
                if line == cap:
                    return line, nv, s
            elif bs & low:
                walk = True
            elif p != skip_at:  # a string starting with "c" (not the content's own value)
                if _at(buf, p, end, _CONF_KEY):
                    nconf += 1
                    conf_at = p
                elif _at(buf, p, end, _CONTENT_KEY):
                    ncont += 1
                    cont_at = p
                    k = _skip_ws(buf, p + 9, end)
                    if k < end and buf[k] == 58:
                        k = _skip_ws(buf, k + 1, end)
                        if k < end and buf[k] == 34:
                            skip_at = k
        carry = ones if inside >> np.uint64(63) else zero
        c += 1
    if s < end:  # a last line without a newline
        _, cnt = _walk_line(buf, s, end, values, nv, line, out)
        nv += cnt
        line += 1
        s = end
    return line, nv, s


@numba.njit(cache=True, nogil=True)
def fnv1a(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """FNV-1a 64 of each `data[offsets[i]:offsets[i + 1]]` (the scanners' content hash)."""
    out = np.empty(offsets.shape[0] - 1, dtype=np.uint64)
    for i in range(out.shape[0]):
        h = np.uint64(FNV_OFFSET)
        for j in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[j])) * np.uint64(FNV_PRIME)
        out[i] = h
    return out


@numba.njit(cache=True, nogil=True)
def gather_rows(values: np.ndarray, starts: np.ndarray, w: int) -> np.ndarray:  # pragma: no cover
    """Rows `values[starts[i]:starts[i] + w]` as a matrix (no index array)."""
    out = np.empty((starts.shape[0], w))
    for i in range(starts.shape[0]):
        s = starts[i]
        for j in range(w):
            out[i, j] = values[s + j]
    return out


@numba.njit(cache=True, nogil=True)
def insert_hashes(
    table: np.ndarray, hashes: np.ndarray, dup: np.ndarray
) -> int:  # pragma: no cover - compiled
    """Insert `hashes` into an open-addressing set (0 = empty slot); flag those already in."""
    mask = table.shape[0] - 1
    added = 0
    for i in range(hashes.shape[0]):
        h = hashes[i]
        if h == 0:
            h = np.uint64(1)
        slot = (h ^ (h >> np.uint64(29))) & np.uint64(mask)
        while True:
            t = table[slot]
            if t == 0:
                table[slot] = h
                dup[i] = False
                added += 1
                break
            if t == h:
                dup[i] = True
                break
            slot = (slot + np.uint64(1)) & np.uint64(mask)
    return added
