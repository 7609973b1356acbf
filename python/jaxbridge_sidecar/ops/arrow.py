"""Arrow IPC tables in and out of the handle table: `put_arrow` and
`get_arrow` (arrow_io.py holds the conversions and the column conventions).
The stream travels as a `uint8` array value, so the wire's own array frames
carry it: no op builds frames of its own."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ..arrow_io import read_ipc, table_from_numpy, table_to_numpy, write_stream
from ..protocol import HandleRef, WireError
from .host import Host, Op


def put_arrow(host: Host, env: dict[str, Any]) -> Any:
    device = host.device(env.get("device"))
    if "stream" not in env:
        raise WireError("ProtocolError", "put_arrow needs `stream`: a uint8 array holding an Arrow IPC stream")
    columns = table_to_numpy(read_ipc(env["stream"]))
    return host.handles.place(columns, lambda a: jax.device_put(a, device))


def get_arrow(host: Host, env: dict[str, Any]) -> Any:
    cols = env.get("columns")
    if not isinstance(cols, dict) or not cols:
        raise WireError("ProtocolError", "get_arrow needs `columns`: a non-empty map from column name to handle")
    arrays = {}
    for name, ref in cols.items():
        if not isinstance(ref, HandleRef):
            raise WireError("ProtocolError", f"get_arrow: column {name!r} must name a handle, got {type(ref).__name__}")
        arrays[name] = np.asarray(host.handles.get(ref.id))
    buf = write_stream(table_from_numpy(arrays))
    return {"stream": np.frombuffer(buf, dtype=np.uint8)}


OPS: dict[str, Op] = {"put_arrow": put_arrow, "get_arrow": get_arrow}
