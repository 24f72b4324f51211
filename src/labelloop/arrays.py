"""Arrow arrays to numpy and back without pandas.

pyarrow's own conversions (`to_numpy`, `pa.array`, `pa.scalar`, `fill_null` with a Python
value) import pandas to check what they were given: half a second of every command's start-up
when pandas is installed. These read and build the buffers directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa


def filled(values: Any, fill: int) -> np.ndarray:
    """An integer or boolean Arrow array as numpy, nulls replaced by `fill`.

    Not `fill_null`: its Python scalar goes through `pa.scalar`, which imports pandas (half a
    second of a command's start-up).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    data = to_numpy(values, nulls=True)
    if not values.null_count:
        return data
    valid = to_numpy(pc.is_valid(values)).astype(bool)
    return np.where(valid, data, np.asarray(fill, dtype=data.dtype))


def arrow(values: np.ndarray, *, valid: np.ndarray | None = None) -> pa.Array:
    """A numeric or boolean numpy array as Arrow, sharing its memory, null where `valid` is
    false (`pa.array` would import pandas to check what it was given)."""
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    mask = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    if values.dtype == np.bool_:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), values.shape[0], [mask, pa.py_buffer(bits)])
    kind = {"f": "float", "i": "int", "u": "uint"}[values.dtype.kind]
    arrow_type = pa.type_for_alias(f"{kind}{values.dtype.itemsize * 8}")
    return pa.Array.from_buffers(arrow_type, values.shape[0], [mask, pa.py_buffer(values)])


def strings(values: Sequence[str]) -> pa.Array:
    """Python strings as an Arrow string array (without `pa.array`, see `arrow`)."""
    import pyarrow as pa

    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), data])


def to_numpy(values: Any, *, nulls: bool = False) -> np.ndarray:
    """A numeric or boolean Arrow array (no nulls, unless `nulls`: then their slots hold
    garbage) as numpy, read from its buffer: pyarrow's own `to_numpy` imports pandas."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_boolean(values.type):
        values = pc.cast(values, pa.uint8())
    if values.null_count and not nulls:
        raise ValueError("to_numpy: the array has nulls")
    kind = "f" if pa.types.is_floating(values.type) else "i"
    kind = "u" if pa.types.is_unsigned_integer(values.type) else kind
    dtype = np.dtype(f"{kind}{values.type.bit_width // 8}")
    buffer = values.buffers()[1]
    if buffer is None:
        return np.zeros(0, dtype=dtype)
    return np.frombuffer(buffer, dtype=dtype)[values.offset :][: len(values)]
