"""ops/bench.py: the benchmark's ops exist only when the bench enables them."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from jaxbridge_sidecar.ops import bench
from jaxbridge_sidecar.server import Server, ServerConfig

from conftest import Client


def test_the_bench_op_is_absent_by_default(sidecar):
    server, client = sidecar
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


def test_bench_psum_times_the_psum_of_a_sharded_array_over_its_mesh(tmp_path: Path, monkeypatch):
    from jaxbridge_sidecar.protocol import HandleRef

    monkeypatch.setenv(bench.BENCH_ENV, "1")
    endpoint = f"ipc://{tmp_path}/b-{uuid.uuid4().hex[:8]}.sock"
    server = Server(ServerConfig(endpoint=endpoint, max_message_bytes=64 * 1024 * 1024))
    server.bind()
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    client = Client(endpoint)
    try:
        a = np.arange(8, dtype=np.float32)
        mesh = {"axis_names": ["x"], "axis_sizes": [4], "axis_types": ["Auto"], "device_ids": [0, 1, 2, 3]}
        h = client.decoded("device_put", value=[a], sharding={"mesh": mesh, "spec": [["x"]]})["result"][0]
        env = client.decoded("bench_psum", x=HandleRef(h.id), repeats=3)
        assert env["ok"], env
        assert len(env["result"]["seconds"]) == 3 and np.array_equal(env["result"]["out"], a.reshape(4, 2).sum(0))
        one = client.decoded("put", value=[a])["result"][0]
        assert client.decoded("bench_psum", x=HandleRef(one.id), repeats=3)["error"]["type"] == "ArgumentError"
    finally:
        client.close()
        server.stop()
        t.join(5)
