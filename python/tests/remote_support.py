"""Remote Python objects in tests: what the TypeScript client sends back for
a value it received, an equinox MLP made in the sidecar, and pycall programs
templated over such a module as the TypeScript tracer writes them."""

from __future__ import annotations

from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.protocol import HandleRef, ModuleIn, ModuleOut, PyRefIn, PyRefOut

from programs_support import Builder, aval


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


def _remote(client, fn: str, **kwargs):
    key = client.decoded("call", fn="jax.random.PRNGKey", args=[0], kwargs={})["result"]
    env = client.decoded("call", fn=fn, args=[], kwargs={**kwargs, "key": HandleRef(key.id)})
    assert env["ok"], env
    return env["result"]


def template(value, arrays: list):
    """A module node as the TypeScript tracer templates it: arrays become slots, in order."""
    if isinstance(value, ModuleOut):
        return {"module": value.key, "fields": [[k, template(v, arrays)] for k, v in value.fields.items()]}
    if isinstance(value, PyRefOut):
        return {"ref": value.id}
    if isinstance(value, list):
        return {"list": [template(v, arrays) for v in value]}
    if value is None:
        return None
    arrays.append(value)  # a HandleOut
    return "array"


def _av(h) -> dict:
    return aval(h.dtype, *h.shape)


def pycall_mlp_program(client, out=("array", [aval("float64", 2)])):
    """A remote MLP(3 -> 2) and a program `y = mlp(x)` over its arrays and x (float32[3])."""
    m = _remote(client, "equinox.nn.MLP", in_size=3, out_size=2, width_size=4, depth=2)
    handles: list = []
    node = template(m, handles)
    arrays = [_av(h) for h in handles] + [aval("float32", 3)]
    b = Builder(*arrays)
    outs = b.eq("pycall", list(range(len(arrays))), {"target": {"object": node, "args": ["array"]}, "method": "__call__", "out": out[0]}, out[1])
    return m, handles, node, arrays, b.bytes(outs)
