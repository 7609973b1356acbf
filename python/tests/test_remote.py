"""remote.py: Python objects as TypeScript pytrees. Equinox Modules become
module nodes, other leaves PyRefs, and sending them back rebuilds the very
structure, with the same arrays (no copies)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from conftest import handles_of, session_of
import numpy as np

from jaxbridge_sidecar.protocol import ModuleOut, PyRefOut

from remote_support import _back, _mlp


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
    rebuilt = session_of(server).host.materialize(_back(m))
    w = handles_of(server).get(m.fields["layers"][0].fields["weight"].id)
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


def test_none_where_the_structure_has_a_leaf_rebuilds_equinox_s_gradient_structure(eqx_sidecar):
    # eqx.filter_grad of an MLP has None for its activation functions; such a tree comes back from
    # TypeScript with null there, and is rebuilt as the same MLP with None in those fields.
    server, client = eqx_sidecar
    m = _mlp(client)
    back = _back(m)
    back.fields["activation"] = None
    back.fields["final_activation"] = None
    rebuilt = server.materialize(back)
    ref = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.PRNGKey(0))
    grads = eqx.filter_grad(lambda mm: jnp.sum(mm(jnp.ones(3))))(ref)
    assert jax.tree.structure(rebuilt) == jax.tree.structure(grads)
    assert rebuilt.activation is None and isinstance(rebuilt.layers, tuple)
    assert eqx.tree_equal(eqx.filter(rebuilt, eqx.is_array), eqx.filter(ref, eqx.is_array))
