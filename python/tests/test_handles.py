"""handles.py: ids name what they held until freed, unknown ids are named in
the error, and objects are deduplicated and reference-counted."""

from __future__ import annotations

import jax
from conftest import handles_of
import numpy as np
import pytest

from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.protocol import HandleRef

from remote_support import _mlp


def test_unknown_handles_are_named(sidecar):
    _, client = sidecar
    env, _ = client.request("call", fn="jax.numpy.sum", args=[HandleRef(4242)], kwargs={})
    assert env["error"]["type"] == "UnknownHandle" and "4242" in env["error"]["message"]


def test_pyrefs_are_deduplicated_and_reference_counted(eqx_sidecar):
    server, client = eqx_sidecar
    a = _mlp(client)
    b = _mlp(client)
    ra, rb = a.fields["activation"], b.fields["activation"]
    assert ra.id == rb.id
    client.decoded("free", handles=[ra.id])
    assert handles_of(server).get_object(rb.id) is jax.nn.relu
    client.decoded("free", handles=[rb.id])
    with pytest.raises(protocol.WireError):
        handles_of(server).get_object(rb.id)


def test_place_puts_handles_where_array_leaves_were_and_adds_nothing_when_a_placement_fails():
    from jaxbridge_sidecar.handles import HandleTable

    table = HandleTable()
    kept = table.add(jax.numpy.arange(3.0))
    value = {"x": np.ones((2, 2), np.float32), "ref": HandleRef(kept.id), "n": 5, "s": ["static", None]}
    out = table.place(value, jax.device_put)
    assert out["n"] == 5 and out["s"] == ["static", None]
    assert isinstance(out["x"], protocol.HandleOut) and out["x"].shape == (2, 2) and out["x"].dtype == "float32"
    assert out["ref"].id != kept.id and np.array_equal(np.asarray(table.get(out["ref"].id)), np.arange(3.0))
    assert len(table) == 3

    def fails_on_the_second(a):
        if isinstance(a, jax.Array):
            raise RuntimeError("no room on the device")
        return jax.device_put(a)

    with pytest.raises(RuntimeError, match="no room"):
        table.place({"x": np.ones(2, np.float32), "ref": HandleRef(kept.id)}, fails_on_the_second)
    assert len(table) == 3, "a failed placement left handles behind"
