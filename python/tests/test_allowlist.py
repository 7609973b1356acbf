"""allowlist.py: a name from the wire reaches only allowed namespaces, never
private names, files or configuration, and `list_attrs` offers exactly what
`call` can reach."""

from __future__ import annotations

import pytest

from jaxbridge_sidecar.protocol import PyRefIn

from remote_support import _back, _mlp


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "jax.numpy.load", "jax.config.update", "jax.numpy._src", "subprocess.run", "jax.profiler.start_trace"])
def test_names_outside_the_allow_list_are_refused(sidecar, name):
    _, client = sidecar
    env, _ = client.request("call", fn=name, args=["echo pwned"], kwargs={})
    assert not env["ok"]
    assert env["error"]["type"] == "NotAllowed"
    assert repr(name) in env["error"]["message"] or name in env["error"]["message"]
    env, _ = client.request("ping")
    assert env["result"] == "pong"


def test_list_attrs_offers_only_what_call_can_reach(sidecar):
    _, client = sidecar
    roots = {e["name"] for e in client.decoded("list_attrs", path="")["result"]}
    assert roots == {"jax"}
    jax_children = {e["name"]: e["kind"] for e in client.decoded("list_attrs", path="jax")["result"]}
    assert jax_children["numpy"] == "module" and jax_children["device_put"] == "function"
    assert "config" not in jax_children and "profiler" not in jax_children
    jnp_names = {e["name"]: e["kind"] for e in client.decoded("list_attrs", path="jax.numpy")["result"]}
    assert jnp_names["matmul"] == "function" and "load" not in jnp_names and "save" not in jnp_names
    assert all(not n.startswith("_") for n in jnp_names)
    env, _ = client.request("list_attrs", path="os")
    assert env["ok"] is False and env["error"]["type"] == "NotAllowed"


def test_private_methods_and_objects_outside_the_allow_list_are_refused(eqx_sidecar):
    _, client = eqx_sidecar
    m = _mlp(client)
    env, _ = client.request("call_method", target=_back(m), name="__reduce__", args=[], kwargs={})
    assert env["error"]["type"] == "NotAllowed"
    td = client.decoded("call", fn="jax.tree.structure", args=[[1]], kwargs={})["result"]
    env, _ = client.request("call_method", target=PyRefIn(td.id), name="unflatten", args=[[1]], kwargs={})
    assert env["error"]["type"] == "NotAllowed"
