"""ops/serialization.py: fingerprints and leaf bytes are lerax's and equinox's own."""

from __future__ import annotations

import equinox as eqx
import jax

from jaxbridge_sidecar.protocol import HandleRef

from remote_support import _back, _mlp


def test_fingerprint_and_leaves_are_lerax_and_equinox_s_own(eqx_sidecar):
    _, client = eqx_sidecar
    m = _mlp(client)
    import hashlib
    import io

    ref = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.PRNGKey(0))
    fp = client.decoded("fingerprint", value=_back(m))["result"]
    assert fp == hashlib.sha256(repr(jax.tree.structure(ref)).encode()).digest()
    out = client.decoded("serialise_leaves", value=_back(m))["result"]
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, ref)
    assert out["leaves"] == buf.getvalue() and out["fingerprint"] == fp


def test_leaves_load_into_a_fresh_skeleton_and_trailing_bytes_are_refused(eqx_sidecar):
    _, client = eqx_sidecar
    a = _mlp(client)
    saved = client.decoded("serialise_leaves", value=_back(a))["result"]["leaves"]
    key = client.decoded("call", fn="jax.random.PRNGKey", args=[9], kwargs={})["result"]
    b = client.decoded("call", fn="equinox.nn.MLP", args=[], kwargs={"in_size": 3, "out_size": 2, "width_size": 4, "depth": 2, "key": HandleRef(key.id)})["result"]
    loaded = client.decoded("deserialise_leaves", like=_back(b), leaves=saved)["result"]
    again = client.decoded("serialise_leaves", value=_back(loaded))["result"]["leaves"]
    assert again == saved
    env, _ = client.request("deserialise_leaves", like=_back(b), leaves=saved + b"\0")
    assert not env["ok"] and "trailing" in env["error"]["message"]
