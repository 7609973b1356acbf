"""ops/arrow.py: put_arrow places each column as a handle, get_arrow
returns a stream pyarrow reads back, and bad requests are refused."""

from __future__ import annotations

import ml_dtypes
from conftest import handles_of
import numpy as np
import pyarrow as pa

from jaxbridge_sidecar import arrow_io
from jaxbridge_sidecar.protocol import HandleRef

from arrow_support import hand_table, refused, stream_bytes


def test_put_arrow_places_each_column_and_get_arrow_returns_the_same_bytes(sidecar):
    server, client = sidecar
    table, want = hand_table()
    env = client.decoded("put_arrow", stream=stream_bytes(table))
    assert env["ok"], env
    handles = env["result"]
    assert list(handles) == list(want)
    for name, a in want.items():
        h = handles[name]
        assert h.shape == a.shape and h.dtype == arrow_io.dtype_name(a.dtype), name
        dev = np.asarray(handles_of(server).get(h.id))
        assert dev.dtype == a.dtype and dev.tobytes() == a.tobytes(), name
    env = client.decoded("get_arrow", columns={name: HandleRef(h.id) for name, h in handles.items()})
    assert env["ok"], env
    got = pa.ipc.open_stream(pa.py_buffer(env["result"]["stream"])).read_all()
    assert got.column_names == list(want)
    # Same types and metadata as the hand-built oracle, and the same values.
    for f, g in zip(table.schema, got.schema):
        assert f.type == g.type and f.metadata == g.metadata, f.name
    assert got.equals(table)
    assert got.to_pydict() == table.to_pydict()


def test_stream_field_must_be_bytes(sidecar):
    _, client = sidecar
    assert refused(client, "put_arrow", stream=np.zeros(3, np.float32))["type"] == "ProtocolError"
    assert refused(client, "put_arrow", stream="abc")["type"] == "ProtocolError"
    assert refused(client, "put_arrow")["type"] == "ProtocolError"


def test_get_arrow_refuses_unequal_leading_axes_scalars_and_non_handles(sidecar):
    _, client = sidecar
    a, b, s = client.decoded("put", value=[np.zeros((3, 2), np.float32), np.zeros(4, np.int32), np.float32(1.0)])["result"]
    err = refused(client, "get_arrow", columns={"['a']": HandleRef(a.id), "['b']": HandleRef(b.id)})
    assert err["type"] == "ValueError" and "['a'] has 3" in err["message"] and "['b'] has 4" in err["message"]
    err = refused(client, "get_arrow", columns={"['s']": HandleRef(s.id)})
    assert "['s']" in err["message"] and "0-d" in err["message"]
    assert refused(client, "get_arrow", columns={"x": 5})["type"] == "ProtocolError"
    assert refused(client, "get_arrow", columns={})["type"] == "ProtocolError"
    assert refused(client, "get_arrow", columns={"x": HandleRef(99999)})["type"] == "UnknownHandle"


def test_get_arrow_of_every_dtype_reads_back_in_pyarrow(sidecar):
    server, client = sidecar
    arrays = {
        "['bool']": np.array([[True, False, True]] * 3),
        "['bf16']": np.arange(3, dtype=np.float32).astype(ml_dtypes.bfloat16),
        "['c128']": np.arange(6, dtype=np.complex128).reshape(3, 2),
        "['u8']": np.arange(3, dtype=np.uint8),
        "['z']": np.zeros((3, 0, 2), np.int16),
    }
    hs = client.decoded("put", value=list(arrays.values()))["result"]
    env = client.decoded("get_arrow", columns={n: HandleRef(h.id) for n, h in zip(arrays, hs)})
    t = pa.ipc.open_stream(pa.py_buffer(env["result"]["stream"])).read_all()
    assert t.schema.field("['bool']").type == pa.list_(pa.bool_(), 3)
    assert t.schema.field("['bf16']").type == pa.uint16() and t.schema.field("['bf16']").metadata[b"jaxbridge.dtype"] == b"bfloat16"
    assert t.schema.field("['c128']").type == pa.list_(pa.list_(pa.float64(), 2), 2)
    assert t.schema.field("['z']").type == pa.list_(pa.list_(pa.int16(), 2), 0)
    assert t.column("['bool']").to_pylist() == [[True, False, True]] * 3
    assert t.column("['c128']").to_pylist()[1] == [[2.0, 0.0], [3.0, 0.0]]
    assert np.array_equal(t.column("['bf16']").to_numpy(), arrays["['bf16']"].view(np.uint16))
