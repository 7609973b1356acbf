"""Arrow IPC streams for `put_arrow` and `get_arrow` (ops/arrow.py): the
Python half of `src/io/arrow.ts`, with the same column conventions.

A table is a pytree of arrays that share a leading axis (rows), one column
per leaf, named by the leaf's key path (`['obs']`, `[0]['w']`, `.w`):

| jaxbridge dtype         | Arrow type of the innermost values                    |
|-------------------------|-------------------------------------------------------|
| int8..int64, uint8..64  | the same Arrow integer type                           |
| float16/float32/float64 | halffloat / float / double                            |
| bool                    | bool (bit-packed: the one conversion that copies)     |
| bfloat16                | uint16 holding the raw bfloat16 bits                  |
| complex64/complex128    | fixed_size_list<float/double>[2] (real, imaginary)    |

A leaf of shape `[n, d1, ..., dk]` is a column of `n` rows whose type nests
`fixed_size_list<...>[dk]` inside `...[d1]` (outermost `d1`); complex adds
the innermost `[2]`. Every field carries metadata `jaxbridge.dtype` (the
dtype name) and `jaxbridge.shape` (the per-row shape as compact JSON,
`[d1,...,dk]`, `[]` for a 1-d leaf). Fields are non-nullable; a column with
nulls is refused. Reading, the metadata is optional (a table from pandas or
polars reads by its Arrow types) but must agree with the types when present.

On the wire (docs/protocol.md) the stream travels as a trailing frame
described by a `uint8[nbytes]` array value, never inside msgpack:
`put_arrow {stream: <uint8 array>} -> {name: handle}` and
`get_arrow {columns: {name: handle}} -> {stream: <uint8 array>}`.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import ml_dtypes
import numpy as np
import pyarrow as pa

from .protocol import WireError, dtype_from_name, dtype_name

DTYPE_KEY = b"jaxbridge.dtype"
SHAPE_KEY = b"jaxbridge.shape"

# Arrow storage type of the innermost values <-> numpy dtype of those values.
_PA_TO_NP: dict[pa.DataType, np.dtype] = {
    pa.bool_(): np.dtype(np.bool_),
    pa.int8(): np.dtype(np.int8),
    pa.int16(): np.dtype(np.int16),
    pa.int32(): np.dtype(np.int32),
    pa.int64(): np.dtype(np.int64),
    pa.uint8(): np.dtype(np.uint8),
    pa.uint16(): np.dtype(np.uint16),
    pa.uint32(): np.dtype(np.uint32),
    pa.uint64(): np.dtype(np.uint64),
    pa.float16(): np.dtype(np.float16),
    pa.float32(): np.dtype(np.float32),
    pa.float64(): np.dtype(np.float64),
}
_NP_TO_PA = {v: k for k, v in _PA_TO_NP.items()}
_COMPLEX_PARTS = {"complex64": np.dtype(np.float32), "complex128": np.dtype(np.float64)}
_BF16 = np.dtype(ml_dtypes.bfloat16)


def _supported() -> str:
    return "bool, (u)int8..64, halffloat, float, double, and fixed_size_list of these"


# --- numpy -> Arrow ------------------------------------------------------------


def column_from_numpy(name: str, arr: Any) -> tuple[pa.Field, pa.Array]:
    """One column: a field with the jaxbridge metadata and an array that views
    `arr`'s buffer (bool excepted: Arrow packs it into bits)."""
    a = np.asarray(arr)
    try:
        dt = dtype_name(a.dtype)
    except WireError as e:
        raise WireError("DTypeError", f"column {name!r}: {e}") from None
    if a.ndim == 0:
        raise ValueError(f"column {name!r} is a 0-d array (a scalar); a column needs a leading axis of rows")
    a = np.ascontiguousarray(a)
    n, row = a.shape[0], [int(d) for d in a.shape[1:]]
    if dt == "bool":
        bits = np.packbits(a.reshape(-1).view(np.uint8), bitorder="little")
        values = pa.Array.from_buffers(pa.bool_(), a.size, [None, pa.py_buffer(bits)])
        dims = row
    else:
        storage = a
        if dt == "bfloat16":
            storage = a.view(np.uint16)
        elif dt in _COMPLEX_PARTS:
            storage = a.view(_COMPLEX_PARTS[dt]).reshape(*a.shape, 2)
        dims = [int(d) for d in storage.shape[1:]]
        flat = storage.reshape(-1)
        values = pa.Array.from_buffers(_NP_TO_PA[flat.dtype], flat.size, [None, pa.py_buffer(flat)])
    out = values
    for j in range(len(dims) - 1, -1, -1):
        outer = n * int(np.prod(dims[:j], dtype=np.int64))
        out = pa.Array.from_buffers(pa.list_(out.type, dims[j]), outer, [None], children=[out])
    meta = {DTYPE_KEY: dt.encode(), SHAPE_KEY: json.dumps(row, separators=(",", ":")).encode()}
    return pa.field(name, out.type, nullable=False, metadata=meta), out


def table_from_numpy(columns: dict[str, Any]) -> pa.Table:
    """A table from named arrays that share a leading axis."""
    if not columns:
        raise ValueError("a table needs at least one column")
    fields, arrays, rows = [], [], {}
    for name, arr in columns.items():
        f, a = column_from_numpy(name, arr)
        fields.append(f)
        arrays.append(a)
        rows[name] = len(a)
    if len(set(rows.values())) > 1:
        shown = ", ".join(f"{k} has {v}" for k, v in rows.items())
        raise ValueError(f"columns must share their leading axis (rows): {shown}")
    return pa.Table.from_batches([pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))])


def write_stream(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


# --- Arrow -> numpy ------------------------------------------------------------


def _meta(field: pa.Field) -> tuple[str | None, list[int] | None]:
    meta = field.metadata or {}
    dt = meta.get(DTYPE_KEY)
    shape = meta.get(SHAPE_KEY)
    name = dt.decode("utf-8", "replace") if dt is not None else None
    parsed = None
    if shape is not None:
        try:
            parsed = json.loads(shape)
        except ValueError:
            parsed = None
        if not (isinstance(parsed, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in parsed)):
            raise WireError("ProtocolError", f"column {field.name!r} has metadata jaxbridge.shape={shape!r}, expected a JSON list of sizes")
    return name, parsed


def column_layout(field: pa.Field) -> tuple[str, list[int], list[int], np.dtype]:
    """(dtype name, per-row shape, list sizes, storage dtype) of a column, or a
    DTypeError naming it."""
    t, dims = field.type, []
    while pa.types.is_fixed_size_list(t):
        dims.append(t.list_size)
        t = t.value_type
    storage = _PA_TO_NP.get(t)
    if storage is None:
        raise WireError("DTypeError", f"column {field.name!r} has Arrow type {field.type}, which maps to no jaxbridge dtype (supported: {_supported()})")
    want, shape = _meta(field)
    name = dtype_name(storage)
    if want is not None and want != name:
        ok = (want == "bfloat16" and storage == np.uint16) or (
            want in _COMPLEX_PARTS and storage == _COMPLEX_PARTS[want] and bool(dims) and dims[-1] == 2
        )
        if not ok:
            try:
                dtype_from_name(want)
            except WireError:
                raise WireError("DTypeError", f"column {field.name!r} names dtype {want!r} in its metadata, which is not a jaxbridge dtype") from None
            raise WireError("DTypeError", f"column {field.name!r} has metadata jaxbridge.dtype={want} but Arrow type {field.type}, which cannot hold it")
        name = want
    row = dims[:-1] if name in _COMPLEX_PARTS else dims
    if shape is not None and shape != row:
        raise WireError("ProtocolError", f"column {field.name!r} has metadata jaxbridge.shape={shape} but its Arrow type {field.type} holds rows of shape {row}")
    return name, row, dims, storage


def _chunk_values(name: str, arr: pa.Array, depth: int) -> np.ndarray:
    for _ in range(depth):
        if arr.null_count:
            raise ValueError(f"column {name!r} has {arr.null_count} null entries; jaxbridge arrays have no nulls")
        arr = arr.flatten()  # the child's slice for this chunk, offsets applied
    if arr.null_count:
        raise ValueError(f"column {name!r} has {arr.null_count} null values; jaxbridge arrays have no nulls")
    if pa.types.is_boolean(arr.type):
        return arr.to_numpy(zero_copy_only=False)  # bits -> bytes: a copy
    return arr.to_numpy(zero_copy_only=True)


def column_to_numpy(field: pa.Field, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column as a numpy array of shape [rows, *row_shape]. Views the Arrow
    buffer when the column is one chunk (bool excepted); more chunks are
    concatenated once."""
    name, row, dims, storage = column_layout(field)
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = [_chunk_values(field.name, c, len(dims)) for c in chunks]
    rows = len(column)
    if len(parts) == 1:
        flat = parts[0]
    elif parts:
        flat = np.concatenate(parts)
    else:
        flat = np.empty(0, dtype=storage)
    per_row = int(np.prod(dims, dtype=np.int64))
    if flat.size != rows * per_row:
        raise ValueError(f"column {field.name!r} has {flat.size} values for {rows} rows of shape {dims}")
    if name == "bfloat16":
        flat = flat.view(_BF16)
    elif name in _COMPLEX_PARTS:
        flat = flat.view(np.dtype(name))
    return flat.reshape(rows, *row)


def read_ipc(data: Any) -> pa.Table:
    """An Arrow IPC stream (or file) from bytes, without copying the buffers."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 1:
            raise WireError("ProtocolError", f"`stream` must be a uint8 array holding an Arrow IPC stream, got {data.dtype} of shape {list(data.shape)}")
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError("ProtocolError", f"`stream` must be a uint8 array holding an Arrow IPC stream, got {type(data).__name__}")
    buf = pa.py_buffer(data)
    try:
        if buf.size >= 6 and buf.slice(0, 6).to_pybytes() == b"ARROW1":
            table = pa.ipc.open_file(buf).read_all()
        else:
            table = pa.ipc.open_stream(buf).read_all()
    except (pa.ArrowException, OSError, ValueError) as e:
        raise WireError("ProtocolError", f"not a readable Arrow IPC stream: {e}{_diagnose(buf)}") from None
    try:
        table.validate(full=True)
    except (pa.ArrowException, ValueError) as e:
        raise WireError("ProtocolError", f"invalid Arrow IPC stream: {e}") from None
    names = table.column_names
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise WireError("ProtocolError", f"the table has duplicate column names: {', '.join(map(repr, dup))}")
    for name, col in zip(names, table.columns):
        if len(col) != table.num_rows:
            raise ValueError(f"column {name!r} has {len(col)} rows, the table {table.num_rows}")
    return table


def table_to_numpy(table: pa.Table) -> dict[str, np.ndarray]:
    return {f.name: column_to_numpy(f, col) for f, col in zip(table.schema, table.columns)}


# --- diagnostics for streams pyarrow refuses -------------------------------------


def _diagnose(buf: pa.Buffer) -> str:
    """Best effort: name the column whose length disagrees with its record batch
    (pyarrow's own message does not). Reads the FieldNodes of each record
    batch's flatbuffer header."""
    try:
        reader = pa.ipc.MessageReader.open_stream(buf)
        schema = pa.ipc.read_schema(reader.read_next_message())
        spans = []  # (field name, index of its top-level node)
        at = 0
        for f in schema:
            spans.append((f.name, at))
            at += _node_count(f.type)
        for b in range(1 << 20):
            msg = reader.read_next_message()
            if msg.type != "record batch":
                continue
            length, nodes = _record_batch_nodes(msg.metadata.to_pybytes())
            for name, i in spans:
                if i < len(nodes) and nodes[i] != length:
                    return f" (column {name!r} has {nodes[i]} rows in record batch {b}, the batch has {length})"
    except Exception:
        pass
    return ""


def _node_count(t: pa.DataType) -> int:
    return 1 + sum(_node_count(t.field(i).type) for i in range(t.num_fields))


def _record_batch_nodes(fb: bytes) -> tuple[int, list[int]]:
    """(length, [node lengths]) from a Message flatbuffer whose header is a RecordBatch."""

    def table_field(tpos: int, slot: int) -> int | None:
        vt = tpos - struct.unpack_from("<i", fb, tpos)[0]
        vsize = struct.unpack_from("<H", fb, vt)[0]
        off = 4 + 2 * slot
        if off >= vsize:
            return None
        rel = struct.unpack_from("<H", fb, vt + off)[0]
        return tpos + rel if rel else None

    def deref(pos: int) -> int:
        return pos + struct.unpack_from("<I", fb, pos)[0]

    msg = deref(0)
    header = deref(table_field(msg, 2))  # Message.header
    lpos = table_field(header, 0)  # RecordBatch.length
    length = struct.unpack_from("<q", fb, lpos)[0] if lpos is not None else 0
    npos = table_field(header, 1)  # RecordBatch.nodes: [FieldNode{length, null_count}]
    if npos is None:
        return length, []
    vec = deref(npos)
    count = struct.unpack_from("<I", fb, vec)[0]
    return length, [struct.unpack_from("<q", fb, vec + 4 + 16 * i)[0] for i in range(count)]
