"""sessions.py and server.py: every connection owns its arrays and objects;
another session's ids are unknown to it; ids are unguessable; a session's
holdings are freed when it closes, when its peer leaves for longer than the
disconnect grace, or when it is silent past its lease; one session's
requests keep their order while another session's are served."""

from __future__ import annotations

import time

import numpy as np
import pytest

from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.handles import SERVER_ID_MAX, SERVER_ID_MIN
from jaxbridge_sidecar.protocol import HandleRef, PyRefIn

from conftest import Client, handles_of, running_sidecar, session_of


def endpoint_of(server) -> str:
    import zmq

    return server.sock.getsockopt_string(zmq.LAST_ENDPOINT)


def wait_for(pred, timeout: float = 10.0) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_another_session_cannot_read_free_or_call_what_a_session_holds(sidecar):
    server, a = sidecar
    b = Client(endpoint_of(server))
    try:
        x = np.arange(6.0).reshape(2, 3)
        h = a.decoded("put", value=[x])["result"][0]
        ref = a.decoded("call", fn="jax.tree.structure", args=[[1, 2]], kwargs={})["result"]
        for op, fields in (
            ("get", {"value": [HandleRef(h.id)]}),
            ("call", {"fn": "jax.numpy.sum", "args": [HandleRef(h.id)], "kwargs": {}}),
            ("call_method", {"target": PyRefIn(ref.id), "name": "unflatten", "args": [[1, 2]], "kwargs": {}}),
        ):
            env = b.decoded(op, **fields)
            assert env["ok"] is False and env["error"]["type"] in ("UnknownHandle", "NotAllowed"), (op, env)
            if env["error"]["type"] == "UnknownHandle":
                assert str(h.id if op != "call_method" else ref.id) in env["error"]["message"]
        # B's free of A's ids frees nothing, and A still reads its array.
        assert b.decoded("free", handles=[h.id, ref.id])["result"] == {"freed": 0, "unknown": [h.id, ref.id]}
        assert np.array_equal(a.decoded("get", value=[HandleRef(h.id)])["result"][0], x)
        assert handles_of(server, a).object_count == 1 and len(handles_of(server, a)) == 1
        assert len(handles_of(server, b)) == 0
    finally:
        b.close()


def test_server_assigned_ids_are_random_in_their_range_and_not_sequential(sidecar):
    _, client = sidecar
    hs = client.decoded("put", value=[np.zeros(1, np.float32) for _ in range(64)])["result"]
    ids = [h.id for h in hs]
    assert len(set(ids)) == 64 and all(SERVER_ID_MIN <= i < SERVER_ID_MAX for i in ids)
    gaps = {b - a for a, b in zip(ids, ids[1:])}
    assert len(gaps) > 32, "ids follow a pattern"


def test_close_frees_everything_the_session_holds_and_only_that(sidecar):
    server, a = sidecar
    b = Client(endpoint_of(server))
    try:
        a.decoded("put", value=[np.ones(4), np.ones(3)])
        hb = b.decoded("put", value=[np.ones(2)])["result"][0]
        assert len(list(server.sessions)) == 2
        assert a.decoded("close")["result"] == {"handles": 2, "objects": 0}
        assert wait_for(lambda: len(list(server.sessions)) == 1)
        assert np.array_equal(b.decoded("get", value=[HandleRef(hb.id)])["result"][0], np.ones(2))
    finally:
        b.close()


def test_a_session_whose_peer_left_is_freed_after_the_disconnect_grace(tmp_path):
    with running_sidecar(tmp_path, disconnect_grace_seconds=0.5) as (server, a):
        a.decoded("ping")
        b = Client(endpoint_of(server))
        b.decoded("put", value=[np.ones((256, 256))])
        assert len(list(server.sessions)) == 2
        b.close()
        assert wait_for(lambda: len(list(server.sessions)) == 1, 10), "the left session is still held"
        assert a.decoded("ping")["result"] == "pong"


def test_a_silent_session_is_freed_when_its_lease_expires_and_pings_renew_it(tmp_path):
    with running_sidecar(tmp_path, session_lease_seconds=1.0) as (server, a):
        b = Client(endpoint_of(server))
        try:
            b.decoded("put", value=[np.ones(3)])
            a.decoded("put", value=[np.ones(3)])
            for _ in range(8):  # a pings through 2 s; b says nothing
                time.sleep(0.25)
                a.decoded("ping")
            assert [len(s.handles) for s in server.sessions] == [1]
            assert session_of(server, a).handles is handles_of(server)
        finally:
            b.close()


def test_too_many_sessions_get_a_short_error_naming_the_option(tmp_path):
    with running_sidecar(tmp_path, max_sessions=1) as (server, a):
        a.decoded("ping")
        b = Client(endpoint_of(server))
        try:
            env = b.decoded("ping")
            assert env["ok"] is False and env["error"]["type"] == "LimitExceeded" and "--max-sessions" in env["error"]["message"]
        finally:
            b.close()


def test_another_session_is_served_while_one_computes_and_a_session_keeps_its_order(sidecar):
    server, a = sidecar
    b = Client(endpoint_of(server))
    try:
        big = np.eye(1200, dtype=np.float32) * 3 + 1
        a.send_raw(protocol.encode({"id": 100, "op": "call", "fn": "jax.numpy.linalg.inv", "args": [big], "kwargs": {}}))
        a.send_raw(protocol.encode({"id": 101, "op": "ping"}))  # answered at once
        a.send_raw(protocol.encode({"id": 102, "op": "call", "fn": "jax.numpy.add", "args": [1, 2], "kwargs": {}, "fetch": True}))
        t0 = time.monotonic()
        assert b.decoded("ping")["result"] == "pong"
        other = time.monotonic() - t0
        order = [a.recv(60000)[0]["id"] for _ in range(3)]
        assert order.index(100) < order.index(102), f"a session's requests ran out of order: {order}"
        assert other < 1.0, f"another session waited {other:.2f} s"
    finally:
        b.close()


def test_a_resent_request_is_answered_from_memory_and_never_runs_twice(tmp_path):
    with running_sidecar(tmp_path, retain_reply_bytes=1 << 20) as (server, a):
        first = a.decoded("put", value=[np.ones(3)])
        rid = a.next_id - 1
        again = protocol.encode({"id": rid, "op": "put", "value": [np.ones(3)], "resent": True})
        a.send_raw(again)
        env, _ = a.recv()
        assert env["id"] == rid and env["ok"]
        assert len(handles_of(server)) == 1, "the resent put ran again"
        assert first["result"][0].id == protocol.HandleOut(*(lambda f: (f[0], f[1], tuple(f[2]), f[3]))(__import__("msgpack").unpackb(env["result"][0].data))).id
        # A resent request the sidecar never saw runs.
        a.send_raw(protocol.encode({"id": 9999, "op": "put", "value": [np.ones(2)], "resent": True}))
        env, _ = a.recv()
        assert env["ok"] and len(handles_of(server)) == 2
