"""ops/arrays.py: arrays in and out of the handle table."""

from __future__ import annotations

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
    assert len(server.handles) == 1
    env = client.decoded("free", handles=[h.id, 999])
    assert env["result"] == {"freed": 1, "unknown": [999]}
    assert len(server.handles) == 0
