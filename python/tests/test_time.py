"""Supervision and time: computations run off the I/O loop, so pings and
other sessions are served while one runs; a run past --max-run-seconds is
declared hung, every session is told why, and the supervisor restarts the
sidecar, whose handshake names the instance it replaced and the cause; a
run whose client left stops waiting for acks."""

from __future__ import annotations

import time

import numpy as np

from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.program import program_hash

from conftest import Client, running_sidecar, sidecar_process
from programs_support import endless_program
from test_events import recv, scan_program, start_run


def hello(client: Client) -> dict:
    from jaxbridge_sidecar.sample import handshake_sample

    env = client.decoded("hello", protocol=protocol.PROTOCOL_VERSION, client="test", sample=handshake_sample())
    assert env["ok"], env
    return env["result"]


def test_a_hung_run_restarts_the_sidecar_and_every_session_learns_why(tmp_path):
    with sidecar_process(tmp_path, "--max-run-seconds", "2", supervised=True) as (proc, a, endpoint):
        first = hello(a)
        b = Client(endpoint)
        try:
            assert hello(b)["instance"] == first["instance"]
            data = endless_program()
            a.send_raw(protocol.encode({"id": 7, "op": "run", "hash": program_hash(data), "program": data, "args": [np.float32(0)]}))
            time.sleep(0.5)
            t0 = time.monotonic()
            assert b.decoded("ping")["result"] == "pong"
            assert time.monotonic() - t0 < 1.0, "a ping waited for another session's run"
            for c in (a, b):
                ev = recv(c, 60000)
                assert ev.get("event") == "restarting", ev
                assert "--max-run-seconds=2" in ev["cause"] and "run" in ev["cause"] and ev["instance"] == first["instance"]
        finally:
            b.close()
        # The supervisor started a fresh sidecar on the same endpoint; it knows what it replaced.
        c = Client(endpoint)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    info = hello(c)
                    break
                except TimeoutError:
                    assert time.monotonic() < deadline, "no sidecar came back"
            assert info["instance"] != first["instance"] and info["pid"] != first["pid"]
            assert info["restarted"]["instance"] == first["instance"]
            assert "--max-run-seconds=2" in info["restarted"]["cause"]
            assert proc.poll() is None, "the supervisor exited"
        finally:
            c.close()


def test_a_run_whose_client_left_stops_waiting_for_acks_and_others_are_served(tmp_path):
    with running_sidecar(tmp_path, disconnect_grace_seconds=0.5) as (server, b):
        import zmq

        endpoint = server.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        a = Client(endpoint)
        start_run(a, scan_program(20_000), [np.array(0.0, np.float32)], 1)
        first = recv(a)
        assert first["event"] == "callbacks"
        # a never acks: its run blocks on the window. Others are served meanwhile.
        t0 = time.monotonic()
        got = b.decoded("call", fn="jax.numpy.add", args=[1, 2], kwargs={}, fetch=True)
        assert got["ok"] and int(got["result"]) == 3 and time.monotonic() - t0 < 5
        a.close()  # the client leaves without a word
        deadline = time.monotonic() + 30
        while any(True for _ in server.runs) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(True for _ in server.runs), "the abandoned run still waits for acks"
        assert len(list(server.sessions)) == 1
        assert b.decoded("ping")["result"] == "pong"


def test_close_ends_a_session_at_once_even_while_its_run_waits_for_acks(sidecar):
    server, a = sidecar
    start_run(a, scan_program(20_000), [np.array(0.0, np.float32)], 1)
    assert recv(a)["event"] == "callbacks"
    a.send_raw(protocol.encode({"id": 2, "op": "close"}))
    while True:
        m = recv(a)
        if m.get("id") == 2:
            break
    assert m["ok"]
    deadline = time.monotonic() + 30
    while (any(True for _ in server.runs) or list(server.sessions)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(True for _ in server.runs) and list(server.sessions) == []
