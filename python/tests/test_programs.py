"""The `run` and `program_stats` ops over a real socket: programs are cached
by the hash the sidecar computes, a hash alone works once the program is
held, bad programs are refused and the sidecar keeps serving."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxbridge_sidecar.ops import bench
from jaxbridge_sidecar.program import program_hash
from jaxbridge_sidecar.protocol import HandleOut, HandleRef
from jaxbridge_sidecar.server import Server, ServerConfig

from conftest import Client
from programs_support import Builder, aval, f32, f64


@pytest.fixture()
def served(sidecar: tuple[Server, Client]) -> tuple[Server, Client]:
    return sidecar


def mlp_program() -> bytes:
    b = Builder(aval("float64", 2, 3), aval("float64", 3, 4))
    (d,) = b.eq("dot_general", [0, 1], {"dimension_numbers": [[[1], [0]], [[], []]], "precision": None, "preferred_element_type": "float64"}, [aval("float64", 2, 4)])
    (t,) = b.eq("tanh", [d], {}, [aval("float64", 2, 4)])
    (s,) = b.eq("add", [t, f64(0.5)], {}, [aval("float64", 2, 4)])
    return b.bytes([s])


def expected(x, w):
    return np.asarray(jax.jit(lambda x, w: jnp.tanh(x @ w) + 0.5)(x, w))


def test_run_lowers_once_then_runs_by_hash_without_relowering_or_retracing(served):
    server, client = served
    data = mlp_program()
    h = program_hash(data)
    x = np.random.default_rng(0).standard_normal((2, 3))
    w = np.random.default_rng(1).standard_normal((3, 4))
    first = client.decoded("run", hash=h, program=data, args=[x, w], fetch=True)
    assert first["ok"], first
    assert first["result"]["lowered"] is True and first["result"]["traced"] is True
    assert np.array_equal(first["result"]["outputs"][0], expected(x, w))
    for _ in range(3):
        again = client.decoded("run", hash=h, args=[x, w], fetch=True)
        assert again["ok"], again
        assert again["result"]["lowered"] is False and again["result"]["traced"] is False
        assert np.array_equal(again["result"]["outputs"][0], first["result"]["outputs"][0])
    stats = client.decoded("program_stats")["result"]
    assert stats["programs"] == 1 and stats["lowered"] == 1 and stats["traces"] == 1 and stats["hits"] == 3


def test_a_hash_the_sidecar_does_not_hold_is_unknown_program_until_the_body_is_sent(served):
    _, client = served
    data = mlp_program()
    h = program_hash(data)
    x, w = np.ones((2, 3)), np.ones((3, 4))
    miss = client.decoded("run", hash=h, args=[x, w], fetch=True)
    assert not miss["ok"] and miss["error"]["type"] == "UnknownProgram" and h in miss["error"]["message"]
    ok = client.decoded("run", hash=h, program=data, args=[x, w], fetch=True)
    assert ok["ok"], ok


def test_a_tampered_hash_is_refused_and_nothing_is_cached_under_it(served):
    _, client = served
    data = mlp_program()
    wrong = "0" * 64
    env = client.decoded("run", hash=wrong, program=data, args=[np.ones((2, 3)), np.ones((3, 4))], fetch=True)
    assert not env["ok"] and env["error"]["type"] == "ProgramHashMismatch"
    assert program_hash(data) in env["error"]["message"]
    env = client.decoded("run", hash=wrong, args=[np.ones((2, 3)), np.ones((3, 4))], fetch=True)
    assert env["error"]["type"] == "UnknownProgram"
    # A body that hashes to the hash of another program cannot replace it either.
    other = Builder(aval("float64", 2, 3), aval("float64", 3, 4))
    other.eq("neg", [0], {}, [aval("float64", 2, 3)])
    h = program_hash(data)
    client.decoded("run", hash=h, program=data, args=[np.ones((2, 3)), np.ones((3, 4))], fetch=True)
    env = client.decoded("run", hash=h, program=other.bytes([2]), args=[np.ones((2, 3)), np.ones((3, 4))], fetch=True)
    assert env["error"]["type"] == "ProgramHashMismatch"


def test_a_refused_primitive_is_not_allowed_and_the_sidecar_keeps_serving(served):
    _, client = served
    b = Builder(aval("float32", 2))
    b.eq("os.system", [0], {}, [aval("float32", 2)])
    data = b.bytes([1])
    env = client.decoded("run", hash=program_hash(data), program=data, args=[np.ones(2, np.float32)])
    assert not env["ok"] and env["error"]["type"] == "NotAllowed" and "'os.system'" in env["error"]["message"]
    assert client.decoded("ping")["result"] == "pong"
    bad = b"{not json"
    env = client.decoded("run", hash=program_hash(bad), program=bad, args=[])
    assert env["error"]["type"] == "ProgramError"
    assert client.decoded("ping")["result"] == "pong"


def test_arguments_travel_as_handles_and_results_stay_on_the_device(served):
    server, client = served
    data = mlp_program()
    x = np.random.default_rng(2).standard_normal((2, 3))
    w = np.random.default_rng(3).standard_normal((3, 4))
    hx, hw = client.decoded("put", value=[x, w])["result"]
    env = client.decoded("run", hash=program_hash(data), program=data, args=[HandleRef(hx.id), HandleRef(hw.id)], fetch=False)
    out = env["result"]["outputs"][0]
    assert isinstance(out, HandleOut) and out.dtype == "float64" and out.shape == (2, 4)
    got = client.decoded("get", value=[HandleRef(out.id)])["result"][0]
    assert np.array_equal(got, expected(x, w))
    env = client.decoded("run", hash=program_hash(data), args=[HandleRef(hx.id), np.ones(3)], fetch=True)
    assert env["error"]["type"] == "ArgumentError" and "argument 1" in env["error"]["message"]


def test_the_cache_is_bounded_and_an_evicted_program_is_unknown_again(served):
    server, client = served
    server.programs.capacity = 2
    hashes = []
    for k in range(3):
        b = Builder(aval("float32", 2))
        b.eq("mul", [0, f32(float(k + 2))], {}, [aval("float32", 2)])
        data = b.bytes([1])
        hashes.append(program_hash(data))
        assert client.decoded("run", hash=hashes[-1], program=data, args=[np.ones(2, np.float32)], fetch=True)["ok"]
    assert client.decoded("run", hash=hashes[0], args=[np.ones(2, np.float32)])["error"]["type"] == "UnknownProgram"
    assert client.decoded("run", hash=hashes[2], args=[np.ones(2, np.float32)], fetch=True)["ok"]
    assert client.decoded("program_stats")["result"]["evicted"] == 1


def test_malformed_run_requests_are_protocol_errors(served):
    _, client = served
    assert client.decoded("run", hash="abc", args=[])["error"]["type"] == "ProtocolError"
    assert client.decoded("run", hash="A" * 64, args=[])["error"]["type"] == "ProtocolError"
    data = mlp_program()
    assert client.decoded("run", hash=program_hash(data), program="text", args=[])["error"]["type"] == "ProtocolError"


def test_the_bench_op_is_absent_by_default(served):
    server, client = served
    assert "bench_lerax_scan" not in server.ops
    env = client.decoded("bench_lerax_scan", carry={}, steps=1, repeats=1)
    assert not env["ok"] and env["error"]["type"] == "UnknownOp"


def test_the_bench_op_runs_lerax_filter_scan_when_enabled(tmp_path: Path, monkeypatch):
    pytest.importorskip("lerax")
    monkeypatch.setenv(bench.BENCH_ENV, "1")
    endpoint = f"ipc://{tmp_path}/b-{uuid.uuid4().hex[:8]}.sock"
    server = Server(ServerConfig(endpoint=endpoint, max_message_bytes=64 * 1024 * 1024))
    assert "bench_lerax_scan" in server.ops
    server.bind()
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    client = Client(endpoint)
    try:
        rng = np.random.default_rng(0)
        carry = {"h": rng.standard_normal(4).astype(np.float32), "w1": rng.standard_normal((4, 4)).astype(np.float32), "b1": np.zeros(4, np.float32), "w2": rng.standard_normal((4, 4)).astype(np.float32), "b2": np.zeros(4, np.float32)}
        env = client.decoded("bench_lerax_scan", carry=carry, steps=7, repeats=2, mode="jit")
        assert env["ok"], env
        res = env["result"]
        assert len(res["seconds"]) == 2 and all(s > 0 for s in res["seconds"])
        h = jnp.asarray(carry["h"])
        ys = []
        for _ in range(7):
            c, y = bench.bench_mlp_body({**carry, "h": h}, None)
            h = c["h"]
            ys.append(y)
        assert np.allclose(res["h"], h, rtol=1e-6) and np.allclose(res["ys"], np.stack(ys), rtol=1e-6)
        bad = client.decoded("bench_lerax_scan", carry=carry, steps=0, repeats=1)
        assert bad["error"]["type"] == "ArgumentError"
    finally:
        client.close()
        server.stop()
        t.join(5)
