"""`pycall`: a traced program calls a method of a remote equinox module or
PyRef. Programs are built by hand here (as the TypeScript tracer writes
them) and every result is compared with equinox called directly."""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbridge_sidecar import program as lowering
from jaxbridge_sidecar.program import pycall
from jaxbridge_sidecar.allowlist import DEFAULT_NAMESPACES, NotAllowed
from jaxbridge_sidecar.protocol import HandleRef, ModuleOut, PyRefOut, WireError
from conftest import running_sidecar
from programs_support import Builder, aval
from jaxbridge_sidecar.program import program_hash as program_hash_of


@pytest.fixture()
def eqx_sidecar(tmp_path: Path):
    with running_sidecar(tmp_path, namespaces=(*DEFAULT_NAMESPACES, "equinox.nn")) as pair:
        yield pair


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


def mlp_program(client, out=("array", [aval("float64", 2)])):
    """A remote MLP(3 -> 2) and a program `y = mlp(x)` over its arrays and x (float32[3])."""
    m = _remote(client, "equinox.nn.MLP", in_size=3, out_size=2, width_size=4, depth=2)
    handles: list = []
    node = template(m, handles)
    arrays = [_av(h) for h in handles] + [aval("float32", 3)]
    b = Builder(*arrays)
    outs = b.eq("pycall", list(range(len(arrays))), {"target": {"object": node, "args": ["array"]}, "method": "__call__", "out": out[0]}, out[1])
    return m, handles, node, arrays, b.bytes(outs)


def test_shapes_come_from_eval_shape_and_a_program_with_pycall_matches_equinox(eqx_sidecar):
    _, client = eqx_sidecar
    m, handles, node, arrays, body = mlp_program(client)
    shapes = client.decoded("pycall_shapes", target=node, args=["array"], method="__call__", arrays=arrays)["result"]
    assert shapes == {"tree": "array", "outputs": [{"dtype": "float64", "shape": [2], "weak": False}]}
    x = np.array([1.0, -2.0, 0.5], np.float32)
    env = client.decoded("run", hash=program_hash_of(body), program=body, args=[HandleRef(h.id) for h in handles] + [x], fetch=True)
    assert env["ok"], env
    want = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.PRNGKey(0))(jnp.asarray(x))
    np.testing.assert_array_equal(env["result"]["outputs"][0], np.asarray(want))


def test_pycall_inside_a_scan_body_sees_the_model_as_scan_constants(eqx_sidecar):
    _, client = eqx_sidecar
    m = _remote(client, "equinox.nn.MLP", in_size=2, out_size=2, width_size=3, depth=1)
    handles: list = []
    node = template(m, handles)
    w = [_av(h) for h in handles]
    n = len(w)
    body = Builder(*w, aval("float64", 2), aval("float64", 2))  # consts, carry, x
    (y,) = body.eq("pycall", list(range(n)) + [n], {"target": {"object": node, "args": ["array"]}, "method": "__call__", "out": "array"}, [aval("float64", 2)])
    (s,) = body.eq("add", [y, n + 1], {}, [aval("float64", 2)])
    top = Builder(*w, aval("float64", 2), aval("float64", 4, 2))
    outs = top.eq(
        "scan",
        list(range(n + 2)),
        {"body": body.sub([y, s]), "length": 4, "reverse": False, "unroll": 1, "num_consts": n, "num_carry": 1, "_split_transpose": False},
        [aval("float64", 2), aval("float64", 4, 2)],
    )
    prog = top.bytes(outs)
    h0 = np.zeros(2)
    xs = np.arange(8.0).reshape(4, 2) / 7
    env = client.decoded("run", hash=program_hash_of(prog), program=prog, args=[HandleRef(h.id) for h in handles] + [h0, xs], fetch=True)
    assert env["ok"], env
    model = eqx.nn.MLP(2, 2, 3, 1, key=jax.random.PRNGKey(0))
    carry, ys = jax.lax.scan(lambda c, x: (model(c), model(c) + x), jnp.asarray(h0), jnp.asarray(xs))
    np.testing.assert_array_equal(env["result"]["outputs"][0], np.asarray(carry))
    np.testing.assert_array_equal(env["result"]["outputs"][1], np.asarray(ys))


def test_tuple_outputs_and_list_arguments_keep_their_structure(eqx_sidecar):
    _, client = eqx_sidecar
    cell = _remote(client, "equinox.nn.LSTMCell", input_size=2, hidden_size=3)
    handles: list = []
    node = template(cell, handles)
    args = ["array", {"list": ["array", "array"]}]
    arrays = [_av(h) for h in handles] + [aval("float64", 2), aval("float64", 3), aval("float64", 3)]
    shapes = client.decoded("pycall_shapes", target=node, args=args, method="__call__", arrays=arrays)["result"]
    assert shapes["tree"] == {"tuple": ["array", "array"]}
    assert [o["shape"] for o in shapes["outputs"]] == [[3], [3]]


def test_refusals_name_what_was_wrong_and_the_sidecar_keeps_serving(eqx_sidecar):
    _, client = eqx_sidecar
    _, _, node, arrays, _ = mlp_program(client)

    env, _ = client.request("pycall_shapes", target=node, args=["array"], method="__reduce__", arrays=arrays)
    assert env["error"]["type"] == "NotAllowed" and "__reduce__" in env["error"]["message"]
    env, _ = client.request("pycall_shapes", target=node, args=["array"], method="save", arrays=arrays)
    assert env["error"]["type"] == "NotAllowed"
    env, _ = client.request("pycall_shapes", target={"ref": 987654}, args=[], method="__call__", arrays=[])
    assert env["error"]["type"] == "UnknownHandle" and "987654" in env["error"]["message"]
    env, _ = client.request("pycall_shapes", target=node, args=["array"], method="__call__", arrays=arrays[:-2])
    assert env["error"]["type"] == "ArgumentError" and "array slots" in env["error"]["message"]
    # A class outside the allow-list: a PyTreeDef lives in jaxlib.
    td = client.decoded("call", fn="jax.tree.structure", args=[[1]], kwargs={})["result"]
    env, _ = client.request("pycall_shapes", target={"ref": td.id}, args=[], method="unflatten", arrays=[])
    assert env["error"]["type"] == "NotAllowed" and "allow-list" in env["error"]["message"]
    # The shape is JAX's to refuse: a wrong input size fails inside the method, with its message.
    bad = arrays[:-1] + [aval("float32", 5)]
    env, _ = client.request("pycall_shapes", target=node, args=["array"], method="__call__", arrays=bad)
    assert env["error"]["type"] == "TypeError" and "dot_general" in env["error"]["message"], env["error"]
    env, _ = client.request("ping")
    assert env["ok"]


def test_a_program_declaring_another_output_structure_is_refused_at_run(eqx_sidecar):
    _, client = eqx_sidecar
    _, handles, _, _, body = mlp_program(client, out=({"tuple": ["array"]}, [aval("float64", 2)]))
    env, _ = client.request("run", hash=program_hash_of(body), program=body, args=[HandleRef(h.id) for h in handles] + [np.zeros(3, np.float32)], fetch=True)
    assert env["error"]["type"] == "ProgramError" and "declares" in env["error"]["message"]
    env, _ = client.request("ping")
    assert env["ok"]


def test_a_cached_program_keeps_its_objects_after_the_client_releases_them(eqx_sidecar):
    server, client = eqx_sidecar
    m, handles, _, _, body = mlp_program(client)
    args = [HandleRef(h.id) for h in handles] + [np.ones(3, np.float32)]
    first = client.decoded("run", hash=program_hash_of(body), program=body, args=args, fetch=True)["result"]["outputs"][0]
    refs = [m.fields["activation"].id, m.fields["final_activation"].id]
    client.decoded("free", handles=refs)
    with pytest.raises(WireError):
        server.handles.get_object(refs[0])
    again = client.decoded("run", hash=program_hash_of(body), args=args, fetch=True)
    assert again["ok"], again
    np.testing.assert_array_equal(again["result"]["outputs"][0], first)


def test_lowering_without_a_sidecar_refuses_pycall_and_outputs_must_be_arrays():
    b = Builder(aval("float32", 3))
    (y,) = b.eq("pycall", [0], {"target": {"object": {"ref": 1}, "args": ["array"]}, "method": "__call__", "out": "array"}, [aval("float32", 3)])
    with pytest.raises(NotAllowed, match="running sidecar"):
        lowering.lower(b.bytes([y]))
    node, arrays = pycall.flatten_output({"b": (1.0, None), "a": [jnp.ones(2)]})
    assert node == {"dict": [["a", {"list": ["array"]}], ["b", {"tuple": ["array", None]}]]} and len(arrays) == 2
    with pytest.raises(WireError, match=r"result\['m'\] is an instance of equinox.nn._linear.Identity"):
        pycall.flatten_output({"m": eqx.nn.Identity()})
