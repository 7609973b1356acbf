"""Client-chosen handles (docs/protocol.md, "Client-chosen handles"): `run`
with `out` holds its outputs at the ids the client chose, so a client can
send a chain of requests without waiting; a failure poisons the ids it
should have filled, and the error travels down the chain to exactly the
requests that depend on it. The handle table's accounting (`memory`)
follows. Oracle: numpy on the same values; JAX's own exception for the
failure."""

from __future__ import annotations

from typing import Any

import jax
import msgpack
import numpy as np
import pytest

from jaxbridge_sidecar import events, protocol
from jaxbridge_sidecar.program import program_hash
from jaxbridge_sidecar.protocol import HandleRef

from conftest import Client, _reply_ext, handles_of, running_sidecar
from programs_support import Builder, aval, f32
from test_events import collect, scan_program, start_run


def add_one(n: int = 3) -> bytes:
    b = Builder(aval("float32", n))
    (o,) = b.eq("add", [0, f32(1.0)], {}, [aval("float32", n)])
    return b.bytes([o], x64=bool(jax.config.jax_enable_x64))


def huge() -> bytes:
    """No inputs, one output of 2**40 float32s: XLA cannot allocate it (RESOURCE_EXHAUSTED), without touching memory."""
    b = Builder()
    (o,) = b.eq("broadcast_in_dim", [f32(0.0)], {"shape": [2**40], "broadcast_dimensions": []}, [aval("float32", 2**40)])
    return b.bytes([o], x64=bool(jax.config.jax_enable_x64))


def send(client: Client, rid: int, op: str, **fields: Any) -> None:
    client.send_raw(protocol.encode({"id": rid, "op": op, **fields}))


def recv(client: Client, timeout_ms: int = 60000) -> dict[str, Any]:
    if not client.sock.poll(timeout_ms):
        raise TimeoutError("no reply")
    frames = client.sock.recv_multipart(copy=False)
    return msgpack.unpackb(frames[0].bytes, raw=False, ext_hook=_reply_ext(frames[1:]))


def run(data: bytes, args: list[Any], out: list[int], body: bool = True) -> dict[str, Any]:
    return {"hash": program_hash(data), **({"program": data} if body else {}), "args": args, "out": out}


def test_a_chain_sent_without_waiting_names_ids_that_earlier_requests_fill(sidecar):
    server, client = sidecar
    data = add_one()
    x = np.array([1.0, 2.0, 3.5], np.float32)
    n = 50
    send(client, 1, "run", **run(data, [x], [1]))
    for k in range(2, n + 1):
        send(client, k, "run", **run(data, [HandleRef(k - 1)], [k], body=False))
    send(client, n + 1, "get", value=[HandleRef(n), HandleRef(1)])
    replies = [recv(client) for _ in range(n + 1)]
    assert [r["id"] for r in replies] == list(range(1, n + 2)), "replies out of order"
    assert all(r["ok"] for r in replies[:n]) and all(r["result"]["outputs"] is None for r in replies[:n])
    last, first = replies[n]["result"]
    np.testing.assert_array_equal(first, x + np.float32(1))
    want = x.copy()
    for _ in range(n):
        want = want + np.float32(1)
    np.testing.assert_array_equal(last, want)
    assert handles_of(server).memory()["arrays"] == n


def test_a_failure_poisons_its_ids_and_exactly_the_requests_that_depend_on_them(tmp_path):
    # The array limit would refuse `huge` before XLA sees it; here XLA itself must fail, with a traceback.
    with running_sidecar(tmp_path, max_array_bytes=2**50) as (server, client):
        _poison_chain(server, client)


def _poison_chain(server: Any, client: Client) -> None:
    data = add_one(4)
    x = np.ones(4, np.float32)
    send(client, 1, "run", **run(huge(), [], [1]))  # fails in XLA
    send(client, 2, "run", **run(data, [HandleRef(1)], [2]))  # depends on it
    send(client, 3, "run", **run(data, [x], [3]))  # does not
    send(client, 4, "run", **run(data, [HandleRef(2)], [4], body=False))  # depends, two steps down
    send(client, 5, "get", value=[HandleRef(4)])
    send(client, 6, "get", value=[HandleRef(3)])
    r = {m["id"]: m for m in (recv(client) for _ in range(6))}
    original = r[1]["error"]
    assert not r[1]["ok"] and "RESOURCE_EXHAUSTED" in original["message"]
    assert original["type"].endswith(("JaxRuntimeError", "XlaRuntimeError"))
    for rid in (2, 4, 5):
        e = r[rid]["error"]
        assert not r[rid]["ok"] and e["type"] == original["type"] and e["traceback"] == original["traceback"]
        assert e["message"].startswith(original["message"]) and "produced by request" in e["message"]
    # Every dependent names the request that raised the error, however far down the chain (the message does not grow).
    for rid, named in ((2, 1), (4, 2), (5, 4)):
        assert r[rid]["error"]["message"] == original["message"] + f" (produced by request 1, which failed; handle {named} holds no array)"
    assert r[3]["ok"]
    np.testing.assert_array_equal(r[6]["result"][0], x + np.float32(1))
    assert handles_of(server).memory()["poisoned"] == 3
    # Freeing a poisoned id removes the poison: it is then simply unknown.
    freed = client.decoded("free", handles=[1, 2, 4])["result"]
    assert freed == {"freed": 3, "unknown": []}
    assert handles_of(server).memory()["poisoned"] == 0
    env = client.decoded("get", value=[HandleRef(2)])
    assert env["error"]["type"] == "UnknownHandle"


def test_out_ids_are_checked_and_a_bad_out_poisons_only_what_holds_nothing(sidecar):
    server, client = sidecar
    data = add_one()
    x = np.zeros(3, np.float32)
    assert client.decoded("run", **run(data, [x], [7]))["ok"]
    env = client.decoded("run", **run(data, [x], [7, 8]))
    assert env["error"]["type"] == "HandleInUse" and "[7]" in env["error"]["message"]
    np.testing.assert_array_equal(client.decoded("get", value=[HandleRef(7)])["result"][0], x + 1)
    assert client.decoded("get", value=[HandleRef(8)])["error"]["type"] == "HandleInUse"
    env = client.decoded("run", **run(data, [x], [10, 11]))
    assert env["error"]["type"] == "ArgumentError" and "2 ids" in env["error"]["message"]
    assert client.decoded("get", value=[HandleRef(11)])["error"]["type"] == "ArgumentError"
    for bad in ([0], [-1], [2**32], [1, 1], "x", [True]):
        env = client.decoded("run", **run(data, [x], bad))  # type: ignore[arg-type]
        assert env["error"]["type"] == "ProtocolError"
    env = client.decoded("run", **run(data, [x], [9]), fetch=True)
    assert env["error"]["type"] == "ProtocolError" and "fetch" in env["error"]["message"]


def test_memory_counts_distinct_arrays_per_device_and_keeps_the_peak(sidecar):
    server, client = sidecar
    base = client.decoded("memory")["result"]
    a, b = np.ones((4, 8), np.float32), np.ones(100, np.int8)
    ha, hb = client.decoded("put", value=[a, b])["result"]
    (ha2,) = client.decoded("put", value=[HandleRef(ha.id)])["result"]  # the same array under a second id
    m = client.decoded("memory")["result"]
    device = str(jax.devices()[0])
    assert m["arrays"] == base["arrays"] + 3
    assert m["bytes"] == base["bytes"] + a.nbytes + b.nbytes
    assert m["devices"][device] == base["devices"].get(device, 0) + a.nbytes + b.nbytes
    assert m["peak_bytes"] >= m["bytes"]
    client.decoded("free", handles=[ha.id, hb.id])
    m2 = client.decoded("memory")["result"]
    assert m2["bytes"] == base["bytes"] + a.nbytes, "the array still held under its second id left the accounting"
    client.decoded("free", handles=[ha2.id])
    m3 = client.decoded("memory")["result"]
    assert m3["bytes"] == base["bytes"] and m3["arrays"] == base["arrays"] and m3["peak_bytes"] == m["peak_bytes"]


def test_requests_behind_a_waiting_run_keep_their_order(sidecar, monkeypatch):
    """A run with callbacks blocks on its window; a run with `out` waits behind
    it, and a `get` and a `free` naming that run's output wait too (they would
    otherwise find nothing, or free nothing and leak)."""
    server, client = sidecar
    monkeypatch.setattr(events, "BATCH_MAX_EVENTS", 10)
    monkeypatch.setattr(events, "WINDOW", 3)
    start_run(client, scan_program(200), [np.array(0.0, np.float32)], 7)
    seen = []
    while len(seen) < 3 or client.sock.poll(500):
        seen.append(recv(client))
    x = np.array([1.0, 2.0, 3.0], np.float32)
    send(client, 8, "run", **run(add_one(), [x], [1]))
    send(client, 9, "get", value=[HandleRef(1)])
    send(client, 10, "run", **run(add_one(), [HandleRef(1)], [2], body=False))
    send(client, 11, "free", handles=[2])
    send(client, 12, "ping")
    assert recv(client)["id"] == 12, "ping waits for nothing"
    assert not client.sock.poll(300), "a request overtook the blocked run"
    client.send_raw(protocol.encode({"op": "ack", "call": 7, "batch": 2}))
    _, reply, _ = collect(client, 7, first=3)
    assert reply["ok"]
    rest = {m["id"]: m for m in (recv(client) for _ in range(4))}
    assert all(m["ok"] for m in rest.values()), rest
    np.testing.assert_array_equal(rest[9]["result"][0], x + 1)
    assert rest[11]["result"] == {"freed": 1, "unknown": []}
    assert handles_of(server).memory()["arrays"] == 1


def test_ready_false_replies_on_dispatch_and_block_waits_for_the_values(sidecar):
    """docs/protocol.md "Readiness": the handles a `ready: false` reply names
    hold the values JAX computes (oracle: numpy), `block` waits for them, and
    `block` of an id that holds nothing fails as `get` would."""
    server, client = sidecar
    x = np.linspace(-3, 3, 1000, dtype=np.float32)
    env = client.decoded("run", hash=program_hash(add_one(1000)), program=add_one(1000), args=[x], ready=False)
    assert env["ok"], env
    (h,) = env["result"]["outputs"]
    assert client.decoded("block", handles=[h.id])["result"] is None
    np.testing.assert_array_equal(client.decoded("get", value=[HandleRef(h.id)])["result"][0], x + np.float32(1))
    env = client.decoded("call", fn="jax.numpy.multiply", args=[x, x], ready=False)
    (m,) = [env["result"]]
    assert client.decoded("block", handles=[m.id, h.id])["result"] is None
    np.testing.assert_array_equal(client.decoded("get", value=[HandleRef(m.id)])["result"][0], np.multiply(x, x))
    assert client.decoded("block", handles=[12345])["error"]["type"] == "UnknownHandle"
    assert client.decoded("block", handles="x")["error"]["type"] == "ProtocolError"
    client.decoded("run", **run(add_one(), [np.zeros(5, np.float32)], [77]))  # wrong input shape: poisons 77
    blocked = client.decoded("block", handles=[77])["error"]
    assert "produced by request" in blocked["message"] and "77" in blocked["message"]
