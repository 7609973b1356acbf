"""ops/arrays.py: arrays in and out of the handle table."""

from __future__ import annotations

from conftest import handles_of
import numpy as np

from jaxbridge_sidecar.protocol import HandleRef


def test_put_get_free_round_trip(sidecar):
    server, client = sidecar
    arr = np.arange(12, dtype=np.int64).reshape(3, 4)
    env = client.decoded("put", value=[arr, 5, "static"])
    h, five, s = env["result"]
    assert (h.dtype, h.shape, five, s) == ("int64", (3, 4), 5, "static")
    got = client.decoded("get", value=[HandleRef(h.id)])["result"][0]
    assert got.dtype == np.int64 and np.array_equal(got, arr)
    assert len(handles_of(server)) == 1
    env = client.decoded("free", handles=[h.id, 999])
    assert env["result"] == {"freed": 1, "unknown": [999]}
    assert len(handles_of(server)) == 0


def test_device_put_places_host_arrays_and_handles_with_a_sharding(sidecar):
    server, client = sidecar
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    h = client.decoded("put", value=[a])["result"][0]
    env = client.decoded("device_put", value={"host": a * 2, "ref": HandleRef(h.id), "k": 1}, mesh={"shape": [1], "axes": ["x"]}, spec=["x", None])
    assert env["ok"], env
    out = env["result"]
    assert out["k"] == 1 and out["ref"].id != h.id and len(handles_of(server)) == 3
    got = client.decoded("get", value=[HandleRef(out["host"].id), HandleRef(out["ref"].id)])["result"]
    assert np.array_equal(got[0], a * 2) and np.array_equal(got[1], a)
    env, _ = client.request("device_put", value=[a], mesh={"shape": [64], "axes": ["x"]}, spec=["x"])
    assert env["error"]["type"] == "ArgumentError" and "64 devices" in env["error"]["message"]
    assert len(handles_of(server)) == 3
