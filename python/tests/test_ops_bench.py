"""ops/bench.py: the benchmark's ops exist only when the bench enables them."""

from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager
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


@contextmanager
def bench_sidecar(tmp_path: Path, monkeypatch):
    """A sidecar with the bench ops enabled, serving on a thread; yields (server, client)."""
    monkeypatch.setenv(bench.BENCH_ENV, "1")
    endpoint = f"ipc://{tmp_path}/b-{uuid.uuid4().hex[:8]}.sock"
    server = Server(ServerConfig(endpoint=endpoint, max_message_bytes=64 * 1024 * 1024))
    server.bind()
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    client = Client(endpoint)
    try:
        yield server, client
    finally:
        client.close()
        server.stop()
        t.join(5)


def test_the_bench_op_runs_lerax_filter_scan_when_enabled(tmp_path: Path, monkeypatch):
    pytest.importorskip("lerax")
    with bench_sidecar(tmp_path, monkeypatch) as (server, client):
        assert "bench_lerax_scan" in server.ops
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


def test_the_train_step_bench_op_runs_optax_adam_in_a_scan_and_as_calls(tmp_path: Path, monkeypatch):
    pytest.importorskip("optax")
    with bench_sidecar(tmp_path, monkeypatch) as (server, client):
        assert "bench_train_step" in server.ops
        rng = np.random.default_rng(1)
        sizes = [5, 8, 8, 3]
        params = {}
        for i in range(3):
            params[f"w{i + 1}"] = (rng.standard_normal((sizes[i], sizes[i + 1])) / np.sqrt(sizes[i])).astype(np.float32)
            params[f"b{i + 1}"] = np.zeros(sizes[i + 1], np.float32)
        x = rng.standard_normal((6, 5)).astype(np.float32)
        y = rng.integers(0, 3, 6).astype(np.int32)
        scan = client.decoded("bench_train_step", params=params, x=x, y=y, steps=4, repeats=2, mode="scan")
        calls = client.decoded("bench_train_step", params=params, x=x, y=y, steps=4, repeats=1, mode="calls")
        assert scan["ok"] and calls["ok"], (scan, calls)
        assert len(scan["result"]["seconds"]) == 2 and len(calls["result"]["seconds"]) == 4
        # Four Adam steps on the cross-entropy, checked against optax run here.
        opt, step = bench.train_step_fns()
        p = {k: jnp.asarray(v) for k, v in params.items()}
        c = (p, opt.init(p))
        for _ in range(4):
            c, loss = step(c, jnp.asarray(x), jnp.asarray(y))
        for got in (scan["result"], calls["result"]):
            for k in params:
                assert np.allclose(got["params"][k], c[0][k], rtol=1e-5, atol=1e-6)
            assert got["losses"].shape == (4,) and np.isclose(got["losses"][-1], loss, rtol=1e-5)
        assert not np.allclose(scan["result"]["params"]["w1"], params["w1"]), "the parameters moved"
        bad = client.decoded("bench_train_step", params={"w1": params["w1"]}, x=x, y=y, steps=1, repeats=1)
        assert bad["error"]["type"] == "ArgumentError"


def test_the_debug_callback_scan_calls_its_python_callback_once_per_step():
    res = bench.bench_debug_callback_scan(None, {"steps": 7, "repeats": 2})  # type: ignore[arg-type]
    assert len(res["seconds"]) == 2 and all(s > 0 for s in res["seconds"])
    assert res["events"] == 7 * 3, "one event per step, for the compiling call and each repeat"
    with pytest.raises(Exception, match="bench_debug_callback_scan needs"):
        bench.bench_debug_callback_scan(None, {"steps": 0, "repeats": 1})  # type: ignore[arg-type]


def test_the_eager_chain_bench_op_adds_one_steps_times(tmp_path: Path, monkeypatch):
    with bench_sidecar(tmp_path, monkeypatch) as (server, client):
        x = np.array([0.5, 1.0, -2.0], np.float32)
        env = client.decoded("bench_eager_chain", x=x, steps=37, repeats=2)
        assert env["ok"], env
        assert len(env["result"]["seconds"]) == 2
        want = x.copy()
        for _ in range(37):
            want = want + np.float32(1)
        np.testing.assert_array_equal(env["result"]["result"], want)
        assert client.decoded("bench_eager_chain", x=x, steps=0, repeats=1)["error"]["type"] == "ArgumentError"


def test_bench_psum_times_the_psum_of_a_sharded_array_over_its_mesh(tmp_path: Path, monkeypatch):
    from jaxbridge_sidecar.protocol import HandleRef

    with bench_sidecar(tmp_path, monkeypatch) as (_server, client):
        a = np.arange(8, dtype=np.float32)
        mesh = {"axis_names": ["x"], "axis_sizes": [4], "axis_types": ["Auto"], "device_ids": [0, 1, 2, 3]}
        h = client.decoded("device_put", value=[a], sharding={"mesh": mesh, "spec": [["x"]]})["result"][0]
        env = client.decoded("bench_psum", x=HandleRef(h.id), repeats=3)
        assert env["ok"], env
        assert len(env["result"]["seconds"]) == 3 and np.array_equal(env["result"]["out"], a.reshape(4, 2).sum(0))
        one = client.decoded("put", value=[a])["result"][0]
        assert client.decoded("bench_psum", x=HandleRef(one.id), repeats=3)["error"]["type"] == "ArgumentError"
