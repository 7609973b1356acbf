"""handles.py: ids name what they held until freed, unknown ids are named in
the error, and objects are deduplicated and reference-counted."""

from __future__ import annotations

import jax
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
    assert server.handles.get_object(rb.id) is jax.nn.relu
    client.decoded("free", handles=[rb.id])
    with pytest.raises(protocol.WireError):
        server.handles.get_object(rb.id)
