"""ops/calls.py: allow-listed functions and methods, results kept on the
device unless fetched, other results as PyRefs."""

from __future__ import annotations

import jax.numpy as jnp
from conftest import handles_of
import numpy as np

from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.protocol import HandleRef


def test_call_keeps_results_on_the_device_unless_fetched(sidecar):
    server, client = sidecar
    a = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((4, 2)).astype(np.float32)
    ha, hb = client.decoded("put", value=[a, b])["result"]
    env = client.decoded("call", fn="jax.numpy.matmul", args=[HandleRef(ha.id), HandleRef(hb.id)], kwargs={}, fetch=False)
    h = env["result"]
    assert isinstance(h, protocol.HandleOut) and h.shape == (3, 2) and h.dtype == "float32"
    fetched = client.decoded("call", fn="jax.numpy.matmul", args=[a, b], kwargs={}, fetch=True)["result"]
    assert np.array_equal(fetched, np.asarray(jnp.matmul(a, b)))
    kw = client.decoded("call", fn="jax.numpy.sum", args=[a], kwargs={"axis": 0}, fetch=True)["result"]
    assert np.array_equal(kw, np.asarray(jnp.sum(a, axis=0)))


def test_results_that_are_not_arrays_or_plain_values_come_back_as_pyrefs(sidecar):
    server, client = sidecar
    env = client.decoded("call", fn="jax.tree.structure", args=[[1, 2]], kwargs={})
    ref = env["result"]
    assert isinstance(ref, protocol.PyRefOut) and ref.type.endswith("PyTreeDef") and "PyTreeDef" in ref.repr
    assert handles_of(server).object_count == 1
    client.decoded("free", handles=[ref.id])
    assert handles_of(server).object_count == 0


def test_import_is_limited_to_the_allow_list(eqx_sidecar):
    _, client = eqx_sidecar
    names = {e["name"] for e in client.decoded("import", module="equinox.nn")["result"]}
    assert {"MLP", "Linear"} <= names
    env, _ = client.request("import", module="os")
    assert env["error"]["type"] == "NotAllowed"
