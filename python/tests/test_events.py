"""events.py: callback events reach the run whose token the program was
called with, from XLA's threads, with no global in between; over a real
socket, batched events reach the client before the run's reply,
backpressure blocks the program when the client does not ack, and the I/O
thread keeps serving meanwhile. The oracle is lerax.utils.callback_wrapper
running the same computation in Python."""

from __future__ import annotations

import threading
from typing import Any

import jax
import jax.numpy as jnp
import msgpack
import numpy as np
import pytest

from jaxbridge_sidecar import events, protocol
from jaxbridge_sidecar.events import NO_RUN, RunTable
from jaxbridge_sidecar.program import lower, program_hash

from conftest import Client, _reply_ext
from programs_support import Builder, aval, f32


def scan_program(n: int, ordered: bool = True, chunk: int = 1) -> bytes:
    """carry f32[] -> scan n steps of {callback(carry, carry*2); carry + 1}
    (`chunk` 1: each event leaves the program as it happens)."""
    body = Builder(aval("float32"))
    (d,) = body.eq("mul", [0, f32(2.0)], {}, [aval("float32")])
    body.eq("callback", [0, d], {"callback": 0, "ordered": ordered, "partitioned": False, "chunk": chunk}, [])
    (c,) = body.eq("add", [0, f32(1.0)], {}, [aval("float32")])
    b = Builder(aval("float32"))
    (out,) = b.eq(
        "scan", [0],
        {"body": body.sub([c]), "length": n, "reverse": False, "unroll": 1, "num_consts": 0, "num_carry": 1, "_split_transpose": False},
        [aval("float32")],
    )
    return b.bytes([out])


def recv(client: Client, timeout_ms: int = 60000) -> dict[str, Any]:
    if not client.sock.poll(timeout_ms):
        raise TimeoutError("nothing arrived")
    frames = client.sock.recv_multipart(copy=False)
    return msgpack.unpackb(frames[0].bytes, raw=False, ext_hook=_reply_ext(frames[1:]))


def start_run(client: Client, data: bytes, args: list[Any], rid: int) -> None:
    client.send_raw(protocol.encode({"id": rid, "op": "run", "hash": program_hash(data), "program": data, "args": args, "fetch": True}))


def collect(client: Client, rid: int, ack: bool = True, first: int = 0) -> tuple[list[Any], dict[str, Any], int]:
    got: list[Any] = []
    batches = first
    while True:
        m = recv(client)
        if "event" in m:
            assert m["event"] == "callbacks" and m["call"] == rid and m["batch"] == batches
            batches += 1
            got.extend(m["events"])
            if ack:
                client.send_raw(protocol.encode({"op": "ack", "call": rid, "batch": m["batch"]}))
            continue
        assert m["id"] == rid
        return got, m, batches


def lerax_sequence(n: int) -> list[list[float]]:
    # lerax needs Python >= 3.13; on 3.11 the oracle is not installable.
    lu = pytest.importorskip("lerax.utils")

    seen: list[list[float]] = []
    cb = lu.callback_with_list_wrapper(lambda a, b: seen.append([a, b]), ordered=True)

    def step(c, _):
        cb(c, c * 2)
        return c + 1, None

    jax.block_until_ready(jax.jit(lambda c: jax.lax.scan(step, c, None, length=n)[0])(jnp.float32(0.5)))
    jax.effects_barrier()
    return seen


def _events(posted: list) -> list:
    return [[np.asarray(a).tolist() for a in arrays] for item in posted if item[0] == "events" for _, arrays in item[3]]


def test_each_run_gets_the_events_of_its_own_call_even_when_runs_overlap():
    runs = RunTable()
    entry = lower(scan_program(50), runs=runs)
    posted: dict[str, list] = {"a": [], "b": []}
    a = runs.open(1, b"a", posted["a"].append)
    b = runs.open(2, b"b", posted["b"].append)
    assert a.token != b.token and NO_RUN not in (a.token, b.token)

    def go(run, start):
        entry([np.float32(start)], run.token)
        jax.effects_barrier()
        run.finish()

    threads = [threading.Thread(target=go, args=(a, 0.0)), threading.Thread(target=go, args=(b, 100.0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert _events(posted["a"]) == [[0.0 + k, 2 * (0.0 + k)] for k in range(50)]
    assert _events(posted["b"]) == [[100.0 + k, 2 * (100.0 + k)] for k in range(50)]
    assert entry.traces == 1, "a new run token must not retrace the program"
    assert runs.find(1) is a and runs.find(2) is b
    runs.close(a)
    assert runs.find(1) is None and list(runs) == [b]


def test_events_of_no_run_or_a_closed_run_are_dropped():
    runs = RunTable()
    entry = lower(scan_program(3), runs=runs)
    posted: list = []
    run = runs.open(5, b"x", posted.append)
    runs.close(run)
    out = entry([np.float32(1.0)], run.token)
    entry([np.float32(1.0)])  # NO_RUN
    jax.effects_barrier()
    run.finish()
    assert float(out[0]) == 4.0 and posted == [] and run.events == 0


def test_ordered_events_match_lerax_value_for_value_and_come_before_the_reply(sidecar):
    server, client = sidecar
    n = 3000
    start_run(client, scan_program(n), [np.array(0.5, np.float32)], 1)
    got, reply, batches = collect(client, 1)
    assert reply["ok"], reply
    assert float(reply["result"]["outputs"][0]) == 0.5 + n
    assert all(cb == 0 for cb, _ in got)
    ours = [[np.asarray(a).tolist() for a in arrays] for _, arrays in got]
    assert ours == lerax_sequence(n)
    assert batches < n / 20, f"{batches} batches for {n} events: not batched"
    assert server.event_batches == batches and server.events_sent == n


def test_unacked_batches_block_the_program_until_the_client_acks(sidecar, monkeypatch):
    server, client = sidecar
    monkeypatch.setattr(events, "BATCH_MAX_EVENTS", 10)
    monkeypatch.setattr(events, "WINDOW", 3)
    n = 200
    start_run(client, scan_program(n), [np.array(0.0, np.float32)], 7)
    seen = [recv(client) for _ in range(3)]  # the window's worth (after compiling)
    while client.sock.poll(1000):
        seen.append(recv(client))
    assert [m.get("batch") for m in seen] == [0, 1, 2], "the sidecar sent past its window"
    # The I/O thread still serves while the program is blocked; a second run waits its turn.
    client.send_raw(protocol.encode({"id": 8, "op": "ping"}))
    assert recv(client)["result"] == "pong"
    start_run(client, scan_program(2), [np.array(0.0, np.float32)], 9)
    assert not client.sock.poll(300), "a run overtook the blocked run"
    client.send_raw(protocol.encode({"op": "ack", "call": 7, "batch": 2}))
    got, reply, batches = collect(client, 7, first=3)
    # Batches also close on age (5 ms), so a slow moment can split one: count
    # events, and only bound the number of batches from below.
    early = sum(len(m["events"]) for m in seen)
    assert reply["ok"] and len(got) == n - early and batches >= n // 10
    second, reply2, _ = collect(client, 9)
    assert reply2["ok"] and len(second) == 2


def test_an_error_in_a_callback_run_is_a_reply_and_the_sidecar_keeps_serving(sidecar):
    server, client = sidecar
    data = scan_program(3)
    start_run(client, data, [np.array([1.0, 2.0], np.float32)], 3)  # wrong shape
    got, reply, _ = collect(client, 3)
    assert not reply["ok"] and reply["error"]["type"] == "ArgumentError" and got == []
    start_run(client, data, [np.array(0.0, np.float32)], 4)
    got, reply, _ = collect(client, 4)
    assert reply["ok"] and len(got) == 3
