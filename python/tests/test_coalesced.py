"""Coalesced messages (docs/protocol.md, "Coalesced messages"): several
requests in one message run in order, as if sent one by one, and the
replies of those that finish at once come back in one message. Nothing is
lost or reordered under pipelining, arrays inside a part keep their own
frames, and a header that does not add up is refused without stopping the
sidecar. Oracle: the same computations done by JAX in this process."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import msgpack
import numpy as np

from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.limits import Limits
from jaxbridge_sidecar.protocol import HandleRef

from conftest import Client, _reply_ext, handles_of, running_sidecar
from test_out_handles import add_one, huge, run


def part(rid: int, op: str, **fields: Any) -> list[Any]:
    return protocol.encode({"id": rid, "op": op, **fields})


def recv_messages(client: Client, replies: int, timeout_ms: int = 60000) -> tuple[list[dict[str, Any]], int]:
    """`replies` replies, decoded, in the order they came, and how many messages carried them."""
    got: list[dict[str, Any]] = []
    messages = 0
    while len(got) < replies:
        if not client.sock.poll(timeout_ms):
            raise TimeoutError(f"{len(got)} of {replies} replies came")
        frames = client.sock.recv_multipart(copy=False)
        messages += 1
        parts = protocol.split_batch(frames, Limits()) if protocol.is_batch(frames[0]) else [frames]
        for p in parts:
            got.append(msgpack.unpackb(p[0].bytes, raw=False, ext_hook=_reply_ext(p[1:])))
    return got, messages


def python_chain(x: np.ndarray, n: int) -> np.ndarray:
    y = jnp.asarray(x)
    for _ in range(n):
        y = y + jnp.float32(1)
    return np.asarray(y)


def test_a_chain_in_one_message_runs_in_order_and_its_replies_come_back_in_one_message(tmp_path):
    # No request leaves the I/O thread here (a long handoff), so the count of reply messages is exact.
    with running_sidecar(tmp_path, handoff_seconds=600.0) as (server, client):
        _chain_in_one_message(server, client)


def _chain_in_one_message(server: Any, client: Client) -> None:
    data = add_one()
    x = np.array([0.5, -2.0, 3.25], np.float32)
    n = 200
    parts = [part(1, "run", **run(data, [x], [1]))]
    parts += [part(k, "run", **run(data, [HandleRef(k - 1)], [k], body=False)) for k in range(2, n + 1)]
    parts.append(part(n + 1, "get", value=[HandleRef(n)]))
    client.send_raw(protocol.pack_batch(parts))
    replies, messages = recv_messages(client, n + 1)
    assert messages == 1, f"{n + 1} replies came in {messages} messages"
    assert [r["id"] for r in replies] == list(range(1, n + 2))
    assert all(r["ok"] for r in replies), [r for r in replies if not r["ok"]][:1]
    np.testing.assert_array_equal(replies[n]["result"][0], python_chain(x, n))
    assert handles_of(server).memory()["arrays"] == n


def test_coalesced_messages_sent_back_to_back_lose_nothing(sidecar):
    """50 messages of 100 dependent runs each, all sent before any reply is
    read, each freeing the array before its input: every reply comes exactly
    once, and the last array equals the chain run by JAX here."""
    server, client = sidecar
    data = add_one()
    x = np.array([1.0, 2.0, 3.0], np.float32)
    batches, per = 50, 100
    client.send_raw(protocol.encode({"id": 1, "op": "run", **run(data, [x], [1])}))
    rid = 1
    for _ in range(batches):
        parts = []
        for _ in range(per):
            rid += 1
            free = [rid - 2] if rid > 2 else []
            parts.append(part(rid, "run", **run(data, [HandleRef(rid - 1)], [rid], body=False), free=free))
        client.send_raw(protocol.pack_batch(parts))
    client.send_raw(protocol.encode({"id": rid + 1, "op": "get", "value": [HandleRef(rid)]}))
    replies, messages = recv_messages(client, rid + 1)
    ids = [r["id"] for r in replies]
    assert sorted(ids) == list(range(1, rid + 2)) and len(set(ids)) == len(ids), "a reply was lost or repeated"
    assert all(r["ok"] for r in replies)
    np.testing.assert_array_equal(replies[-1]["result"][0], python_chain(x, rid))
    assert handles_of(server).memory()["arrays"] == 2  # the last two of the chain: only the one before each was freed


def test_parts_keep_their_own_frames_and_errors_stay_in_their_part(tmp_path):
    with running_sidecar(tmp_path, max_array_bytes=2**50, handoff_seconds=600.0) as (server, client):
        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        b = np.array([1, -2], np.int64 if jax.config.jax_enable_x64 else np.int32)
        parts = [
            part(1, "put", value=[a, b]),
            part(2, "run", **run(huge(), [], [5])),  # XLA fails: poisons id 5
            part(3, "run", **run(add_one(4), [HandleRef(5)], [6])),  # named the poisoned id
            part(4, "call", fn="jax.numpy.add", args=[a, a], fetch=True),
            part(5, "ping"),
        ]
        client.send_raw(protocol.pack_batch(parts))
        replies, messages = recv_messages(client, 5)
        assert messages == 1
        r = {m["id"]: m for m in replies}
        ha, hb = r[1]["result"]
        assert not r[2]["ok"] and "RESOURCE_EXHAUSTED" in r[2]["error"]["message"]
        assert not r[3]["ok"] and r[3]["error"]["message"].startswith(r[2]["error"]["message"])
        np.testing.assert_array_equal(r[4]["result"], np.asarray(jnp.add(a, a)))
        assert r[5]["result"] == "pong"
        got = client.decoded("get", value=[HandleRef(ha.id), HandleRef(hb.id)])["result"]
        np.testing.assert_array_equal(got[0], a)
        np.testing.assert_array_equal(got[1], b)


def test_a_header_that_does_not_add_up_is_refused_and_the_sidecar_keeps_serving(sidecar):
    server, client = sidecar
    ping = part(9, "ping")
    bad_headers = [
        msgpack.packb({"batch": [2]}),  # one frame follows, not two
        msgpack.packb({"batch": [0, 1]}),  # an empty part
        msgpack.packb({"batch": []}),
        msgpack.packb({"batch": "x"}),
        b"\x81\xa5batch\xc1",  # not msgpack after the prefix
    ]
    for head in bad_headers:
        client.send_raw([head, *ping])
        env, _ = client.recv()
        assert env["id"] is None and not env["ok"] and env["error"]["type"] == "ProtocolError", env
        assert "coalesced" in env["error"]["message"]
    assert client.decoded("ping")["result"] == "pong"
