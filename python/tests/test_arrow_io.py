"""arrow_io.py: the column conventions, read from streams built by hand; every
refused stream gets an error naming the column and the sidecar keeps
serving (the streams go through `put_arrow`)."""

from __future__ import annotations

import struct

from conftest import handles_of
import numpy as np
import pyarrow as pa
import pytest

from jaxbridge_sidecar import arrow_io

from arrow_support import RNG, fsl, hand_table, meta, refused, stream_bytes


def test_zero_row_tables_and_file_format_are_accepted(sidecar):
    _, client = sidecar
    empty = pa.table({"['x']": fsl(pa.array([], pa.float32()), [3]), "['y']": pa.array([], pa.bool_())})
    env = client.decoded("put_arrow", stream=stream_bytes(empty))
    assert env["ok"], env
    assert env["result"]["['x']"].shape == (0, 3) and env["result"]["['y']"].dtype == "bool"
    table, want = hand_table()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    env = client.decoded("put_arrow", stream=np.frombuffer(sink.getvalue(), np.uint8))
    assert env["ok"], env
    assert [h.shape for h in env["result"].values()] == [a.shape for a in want.values()]


def test_columns_without_metadata_read_by_their_arrow_types(sidecar):
    server, client = sidecar
    h = np.arange(6, dtype=np.float16).reshape(3, 2)
    t = pa.table({"obs": fsl(pa.array(h.reshape(-1)), [2]), "n": pa.array(np.arange(3, dtype=np.uint16))})
    res = client.decoded("put_arrow", stream=stream_bytes(t))["result"]
    assert (res["obs"].dtype, res["obs"].shape, res["n"].dtype) == ("float16", (3, 2), "uint16")
    assert np.asarray(handles_of(server).get(res["obs"].id)).tobytes() == h.tobytes()


def test_several_record_batches_and_sliced_bool_chunks(sidecar):
    server, client = sidecar
    bits = RNG.integers(0, 2, size=23).astype(bool)
    vals = np.arange(23, dtype=np.int32)
    full = pa.table({"b": pa.array(bits), "v": pa.array(vals)})
    # Three batches, the middle ones starting at odd bit offsets.
    batches = [full.slice(0, 5).to_batches()[0], full.slice(5, 9).to_batches()[0], full.slice(14).to_batches()[0]]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, full.schema) as w:
        for b in batches:
            w.write_batch(b)
    res = client.decoded("put_arrow", stream=np.frombuffer(sink.getvalue(), np.uint8))["result"]
    assert np.array_equal(np.asarray(handles_of(server).get(res["b"].id)), bits)
    assert np.array_equal(np.asarray(handles_of(server).get(res["v"].id)), vals)


def test_single_chunk_columns_view_the_stream_buffer():
    a = RNG.standard_normal((4, 3)).astype(np.float32)
    c = (RNG.standard_normal(4) + 1j).astype(np.complex128)
    t = pa.table({"a": fsl(pa.array(a.reshape(-1)), [3]), "c": fsl(pa.array(c.view(np.float64)), [2])},
                 schema=pa.schema([pa.field("a", pa.list_(pa.float32(), 3)), pa.field("c", pa.list_(pa.float64(), 2), metadata=meta("complex128", []))]))
    data = stream_bytes(t)
    arrays = arrow_io.table_to_numpy(arrow_io.read_ipc(data))
    assert np.shares_memory(arrays["a"], data) and np.shares_memory(arrays["c"], data)
    assert arrays["a"].tobytes() == a.tobytes() and arrays["c"].dtype == np.complex128 and arrays["c"].tobytes() == c.tobytes()


def test_writer_views_numpy_buffers():
    a = np.arange(12, dtype=np.float64).reshape(4, 3)
    f, arr = arrow_io.column_from_numpy("a", a)
    assert arr.flatten().buffers()[1].address == a.ctypes.data


@pytest.mark.parametrize(
    "payload",
    [
        np.frombuffer(b"definitely not arrow" * 10, np.uint8),
        np.zeros(0, np.uint8),
        np.frombuffer(b"\xff\xff\xff\xff\x10\x00\x00\x00" + b"\x00" * 4, np.uint8),
    ],
    ids=["garbage", "empty", "bad-flatbuffer"],
)
def test_malformed_streams_are_refused(sidecar, payload):
    _, client = sidecar
    err = refused(client, "put_arrow", stream=payload)
    assert err["type"] == "ProtocolError" and "Arrow IPC" in err["message"]


def test_truncated_stream_is_refused(sidecar):
    _, client = sidecar
    table, _ = hand_table()
    data = stream_bytes(table)
    err = refused(client, "put_arrow", stream=data[: len(data) // 2].copy())
    assert err["type"] == "ProtocolError"


def test_ragged_columns_are_refused_naming_the_column(sidecar):
    """A record batch whose column 'b' claims 4 rows in a batch of 5 (patched in the header)."""
    _, client = sidecar
    t = pa.table({"a": pa.array(np.arange(5.0)), "b": pa.array(np.arange(5))})
    raw = bytearray(stream_bytes(t).tobytes())
    node = struct.pack("<qq", 5, 0)
    at = [i for i in range(len(raw) - 15) if raw[i : i + 16] == node]
    assert len(at) == 2, "expected the two FieldNodes of the record batch"
    raw[at[1] : at[1] + 8] = struct.pack("<q", 4)
    err = refused(client, "put_arrow", stream=np.frombuffer(bytes(raw), np.uint8))
    assert err["type"] == "ProtocolError"
    assert "'b'" in err["message"] and "4 rows" in err["message"], err["message"]


@pytest.mark.parametrize(
    "column, text",
    [
        (pa.array(["a", "b"]), "string"),
        (pa.array([[1.0], [2.0, 3.0]]), "list<item: double>"),
        (pa.array([{"x": 1}, {"x": 2}]), "struct"),
        (pa.array(np.array([1, 2], "datetime64[s]")), "timestamp"),
        (pa.array(["a", "b"]).dictionary_encode(), "dictionary"),
        (pa.array([1, 2], pa.decimal128(5, 2)), "decimal"),
    ],
    ids=["utf8", "var-list", "struct", "timestamp", "dictionary", "decimal"],
)
def test_unsupported_types_are_refused_naming_the_column(sidecar, column, text):
    _, client = sidecar
    t = pa.table({"ok": pa.array([1.0, 2.0]), "['bad']": column})
    err = refused(client, "put_arrow", stream=stream_bytes(t))
    assert err["type"] == "DTypeError"
    assert "['bad']" in err["message"] and text in err["message"], err["message"]


def test_nulls_and_contradicting_metadata_are_refused(sidecar):
    _, client = sidecar
    t = pa.table({"x": pa.array([1.0, None])})
    err = refused(client, "put_arrow", stream=stream_bytes(t))
    assert err["type"] == "ValueError" and "'x'" in err["message"] and "null" in err["message"]
    inner = pa.table({"y": fsl(pa.array([1.0, None, 3.0, 4.0]), [2])})
    err = refused(client, "put_arrow", stream=stream_bytes(inner))
    assert "'y'" in err["message"] and "null" in err["message"]
    for dt, row, typ in [("bfloat16", [], pa.float32()), ("complex64", [], pa.float32()), ("float64", [], pa.float32()), ("object", [], pa.float32())]:
        f = pa.field("m", typ, metadata=meta(dt, row))
        err = refused(client, "put_arrow", stream=stream_bytes(pa.Table.from_arrays([pa.array([1.0], typ)], schema=pa.schema([f]))))
        assert err["type"] == "DTypeError" and "'m'" in err["message"] and dt in err["message"], err
    f = pa.field("s", pa.list_(pa.float32(), 2), metadata=meta("float32", [3]))
    err = refused(client, "put_arrow", stream=stream_bytes(pa.Table.from_arrays([fsl(pa.array([1.0, 2.0], pa.float32()), [2])], schema=pa.schema([f]))))
    assert "'s'" in err["message"] and "[3]" in err["message"]


def test_duplicate_column_names_are_refused(sidecar):
    _, client = sidecar
    t = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["x", "x"])
    err = refused(client, "put_arrow", stream=stream_bytes(t))
    assert err["type"] == "ProtocolError" and "'x'" in err["message"]
