"""String columns as integer codes, built batch by batch (the strict readers' encoder).

A column is dictionary-encoded one record batch at a time (the engine's batches, so a 10M-row
file is never held as strings); the batches' dictionaries are unified once at the end. Trimming,
missing-value spellings and sorting then work on the distinct values only, never per row.
Codes are int32 (half the memory of int64; a column has far fewer than 2**31 distinct values).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelloop import arrays, tables

CODE = np.int32


def lookup(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`table[index]`, -1 where `index` is -1 (one gather: -1 picks an appended -1)."""
    extended = np.empty(table.shape[0] + 1, dtype=CODE)
    extended[:-1] = table
    extended[-1] = -1
    return extended[index]


class ColumnCodes:
    """One string column as codes into its sorted, trimmed distinct values (-1: missing).

    Feed it with `add` (one Arrow array per batch), then call `finish`; afterwards `codes`
    (int32, one per row), `sorted` (Arrow strings) and `raw(rows)` (the cells as written) are set.
    """

    def __init__(self) -> None:
        self._dictionaries: list[Any] = []
        self._indices: list[np.ndarray] = []
        self.codes = np.zeros(0, dtype=CODE)
        self.sorted: Any = None
        self._raw: Any = None
        self._raw_codes = np.zeros(0, dtype=CODE)

    def add(self, column: Any) -> None:
        """Encode one batch's column (an Arrow string array or chunked array)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(column, pa.ChunkedArray):
            for chunk in column.chunks:
                self.add(chunk)
            return
        encoded = pc.dictionary_encode(column)
        self._dictionaries.append(encoded.dictionary)
        self._indices.append(arrays.filled(encoded.indices, -1).astype(CODE, copy=False))

    def finish(self) -> ColumnCodes:
        """Unify the batches' dictionaries, then trim, drop missing spellings and sort."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self._dictionaries:
            self.add(arrays.strings([]))
        # Sorting the batches' dictionaries unifies them and orders the values in one go
        # (cheaper than hashing them again and sorting after).
        together = pa.concat_arrays(self._dictionaries)
        order = arrays.to_numpy(pc.sort_indices(together)).astype(np.int64)
        ordered = together.take(arrays.arrow(order))
        first = np.ones(order.shape[0], dtype=bool)
        if order.shape[0] > 1:
            first[1:] = ~arrays.to_numpy(pc.equal(ordered[1:], ordered[:-1])).astype(bool)
        to_raw = np.empty(order.shape[0], dtype=CODE)
        to_raw[order] = np.cumsum(first, dtype=np.int64) - 1
        raw = ordered.filter(arrays.arrow(first))  # the distinct cells as written, sorted
        del together, ordered, order, first
        parts, offset = [], 0
        for dictionary, index in zip(self._dictionaries, self._indices, strict=True):
            parts.append(lookup(to_raw[offset : offset + len(dictionary)], index))
            offset += len(dictionary)
        self._dictionaries, self._indices = [], []
        raw_codes = np.concatenate(parts) if len(parts) > 1 else parts[0]
        del parts
        missing = tables.missing_mask(raw)
        trimmed = pc.utf8_trim_whitespace(raw)
        if pc.all(pc.equal(trimmed, raw)).as_py() is not False:
            # Already trimmed, distinct and sorted: only the missing spellings drop out.
            self.sorted = raw.filter(arrays.arrow(~missing))
            remap = (np.cumsum(~missing, dtype=np.int64) - 1).astype(CODE)
        else:  # " cat" and "cat" are one value
            again = pc.dictionary_encode(trimmed)
            clean, to_clean = again.dictionary, arrays.to_numpy(again.indices).astype(CODE)
            present = np.zeros(len(clean), dtype=bool)
            present[to_clean[~missing]] = True
            rank_order = arrays.to_numpy(pc.sort_indices(clean)).astype(CODE)
            rank_order = rank_order[present[rank_order]]
            rank = np.full(len(clean), -1, dtype=CODE)
            rank[rank_order] = np.arange(rank_order.shape[0], dtype=CODE)
            self.sorted = clean.take(arrays.arrow(rank_order))
            remap = rank[to_clean]
        remap[missing] = -1
        self.codes = lookup(remap, raw_codes)
        self._raw, self._raw_codes = raw, raw_codes
        return self

    def values(self) -> list[str]:
        """The distinct values, sorted (missing spellings excluded)."""
        return [str(v) for v in self.sorted.to_pylist()]

    def raw(self, rows: np.ndarray) -> list[Any]:
        """The cells of some rows as written (for messages); None for an absent value."""
        index = self._raw_codes[rows]
        return [None if j < 0 else self._raw[int(j)].as_py() for j in index.tolist()]


def encode_column(column: Any) -> ColumnCodes:
    """`ColumnCodes` of a whole column at once."""
    codes = ColumnCodes()
    codes.add(column)
    return codes.finish()
