"""Python objects as TypeScript pytrees: equinox Modules become module nodes,
other leaves PyRefs, and sending them back rebuilds the very structure, with
the same arrays (no copies)."""

from __future__ import annotations

import uuid
import threading
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.protocol import HandleRef, ModuleIn, ModuleOut, PyRefIn, PyRefOut
from jaxbridge_sidecar.server import Server, ServerConfig
from jaxbridge_sidecar.allowlist import DEFAULT_NAMESPACES
from conftest import running_sidecar


@pytest.fixture()
def eqx_sidecar(tmp_path: Path):
    with running_sidecar(tmp_path, namespaces=(*DEFAULT_NAMESPACES, "equinox.nn")) as pair:
        yield pair


def _back(value):
    """What the TypeScript client sends for a value it received: refs by id, modules by key and children."""
    if isinstance(value, protocol.HandleOut):
        return HandleRef(value.id)
    if isinstance(value, PyRefOut):
        return PyRefIn(value.id)
    if isinstance(value, ModuleOut):
        return ModuleIn(value.key, {k: _back(v) for k, v in value.fields.items()})
    if isinstance(value, dict):
        return {k: _back(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_back(v) for v in value]
    return value


def _mlp(client):
    key = client.decoded("call", fn="jax.random.PRNGKey", args=[0], kwargs={})["result"]
    env = client.decoded("call", fn="equinox.nn.MLP", args=[], kwargs={"in_size": 3, "out_size": 2, "width_size": 4, "depth": 2, "key": HandleRef(key.id)})
    assert env["ok"], env
    return env["result"]


def test_an_equinox_module_comes_back_as_a_module_node_with_pyref_leaves(eqx_sidecar):
    server, client = eqx_sidecar
    m = _mlp(client)
    assert isinstance(m, ModuleOut) and m.qualname == "equinox.nn._mlp.MLP"
    want = jax.tree.structure(eqx.nn.MLP(3, 2, 4, 2, key=jax.random.PRNGKey(0)))
    import hashlib

    assert m.key == hashlib.sha256(repr(want).encode()).hexdigest()
    layers = m.fields["layers"]
    assert isinstance(layers, list) and len(layers) == 3
    assert isinstance(layers[0], ModuleOut) and layers[0].fields["weight"].shape == (4, 3)
    assert isinstance(m.fields["activation"], PyRefOut) and "relu" in m.fields["activation"].repr


def test_sending_a_module_back_rebuilds_it_with_the_same_arrays(eqx_sidecar):
    server, client = eqx_sidecar
    m = _mlp(client)
    x = np.array([1.0, -2.0, 0.5], np.float32)
    got = client.decoded("call_method", target=_back(m), name="__call__", args=[x], kwargs={}, fetch=True)["result"]
    rebuilt = server.materialize(_back(m))
    w = server.handles.get(m.fields["layers"][0].fields["weight"].id)
    assert rebuilt.layers[0].weight is w, "arrays are reused, not copied"
    assert isinstance(rebuilt.layers, tuple)
    ref = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.PRNGKey(0))
    assert eqx.tree_equal(rebuilt, ref)
    np.testing.assert_array_equal(got, np.asarray(ref(jnp.asarray(x))))


def test_a_module_with_a_changed_structure_is_refused(eqx_sidecar):
    _, client = eqx_sidecar
    m = _mlp(client)
    bad = _back(m)
    bad.fields["layers"].pop()
    env, _ = client.request("call_method", target=bad, name="__call__", args=[np.zeros(3, np.float32)], kwargs={})
    assert not env["ok"] and "structure was changed" in env["error"]["message"]
    env, _ = client.request("ping")
    assert env["ok"]


def test_private_methods_and_objects_outside_the_allow_list_are_refused(eqx_sidecar):
    _, client = eqx_sidecar
    m = _mlp(client)
    env, _ = client.request("call_method", target=_back(m), name="__reduce__", args=[], kwargs={})
    assert env["error"]["type"] == "NotAllowed"
    td = client.decoded("call", fn="jax.tree.structure", args=[[1]], kwargs={})["result"]
    env, _ = client.request("call_method", target=PyRefIn(td.id), name="unflatten", args=[[1]], kwargs={})
    assert env["error"]["type"] == "NotAllowed"


def test_import_is_limited_to_the_allow_list(eqx_sidecar):
    _, client = eqx_sidecar
    names = {e["name"] for e in client.decoded("import", module="equinox.nn")["result"]}
    assert {"MLP", "Linear"} <= names
    env, _ = client.request("import", module="os")
    assert env["error"]["type"] == "NotAllowed"


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
