"""Arrow IPC streams built by hand with pyarrow (the oracle), not with
arrow_io's own writer, for the arrow tests."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pyarrow as pa


RNG = np.random.default_rng(7)


def stream_bytes(table: pa.Table) -> np.ndarray:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return np.frombuffer(sink.getvalue(), dtype=np.uint8)


def meta(dtype: str, row: list[int]) -> dict[bytes, bytes]:
    return {b"jaxbridge.dtype": dtype.encode(), b"jaxbridge.shape": ("[" + ",".join(map(str, row)) + "]").encode()}


def fsl(values: pa.Array, dims: list[int]) -> pa.Array:
    """Nest `values` in FixedSizeLists, outermost dims[0] (by hand, with pyarrow's own constructor)."""
    for k in reversed(dims):
        values = pa.FixedSizeListArray.from_arrays(values, k)
    return values


def hand_table() -> tuple[pa.Table, dict[str, np.ndarray]]:
    """A table with the jaxbridge conventions, and the arrays it holds."""
    n = 5
    want = {
        "['f32']": RNG.standard_normal((n, 2, 3)).astype(np.float32),
        "['i64']": RNG.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64),
        "['u64']": RNG.integers(0, 2**64 - 1, size=(n, 2), dtype=np.uint64),
        "['b']": RNG.integers(0, 2, size=(n, 3)).astype(bool),
        "['bf']": RNG.standard_normal((n, 4)).astype(ml_dtypes.bfloat16),
        "['h']": RNG.standard_normal(n).astype(np.float16),
        "['c']": (RNG.standard_normal((n, 2)) + 1j * RNG.standard_normal((n, 2))).astype(np.complex64),
        "[0]": RNG.integers(-128, 127, size=n, dtype=np.int8),
    }
    cols, fields = [], []
    for name, a in want.items():
        if a.dtype == ml_dtypes.bfloat16:
            values, dims, dt = pa.array(a.view(np.uint16).reshape(-1)), list(a.shape[1:]), "bfloat16"
        elif a.dtype == np.complex64:
            values, dims, dt = pa.array(a.view(np.float32).reshape(-1)), [*a.shape[1:], 2], "complex64"
        else:
            values, dims, dt = pa.array(a.reshape(-1)), list(a.shape[1:]), str(a.dtype)
        col = fsl(values, dims)
        cols.append(col)
        fields.append(pa.field(name, col.type, nullable=False, metadata=meta(dt, list(a.shape[1:]))))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields)), want


def refused(client, op: str, **fields):
    env, _ = client.request(op, **fields)
    assert not env["ok"], env
    pong, _ = client.request("ping")
    assert pong["result"] == "pong", "the sidecar stopped serving"
    return env["error"]
