"""program/pycall.py: a traced program calls a method of a remote equinox
module or PyRef. Programs are built by hand here (as the TypeScript tracer
writes them) and every result is compared with equinox called directly."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from conftest import handles_of
import numpy as np
import pytest

from jaxbridge_sidecar import program as lowering
from jaxbridge_sidecar.allowlist import NotAllowed
from jaxbridge_sidecar.program import pycall
from jaxbridge_sidecar.program import program_hash
from jaxbridge_sidecar.protocol import HandleRef, WireError

from programs_support import Builder, aval
from remote_support import _av, _remote, pycall_mlp_program, template


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
    env = client.decoded("run", hash=program_hash(prog), program=prog, args=[HandleRef(h.id) for h in handles] + [h0, xs], fetch=True)
    assert env["ok"], env
    model = eqx.nn.MLP(2, 2, 3, 1, key=jax.random.PRNGKey(0))
    carry, ys = jax.lax.scan(lambda c, x: (model(c), model(c) + x), jnp.asarray(h0), jnp.asarray(xs))
    np.testing.assert_array_equal(env["result"]["outputs"][0], np.asarray(carry))
    np.testing.assert_array_equal(env["result"]["outputs"][1], np.asarray(ys))


def test_a_program_declaring_another_output_structure_is_refused_at_run(eqx_sidecar):
    _, client = eqx_sidecar
    _, handles, _, _, body = pycall_mlp_program(client, out=({"tuple": ["array"]}, [aval("float64", 2)]))
    env, _ = client.request("run", hash=program_hash(body), program=body, args=[HandleRef(h.id) for h in handles] + [np.zeros(3, np.float32)], fetch=True)
    assert env["error"]["type"] == "ProgramError" and "declares" in env["error"]["message"]
    env, _ = client.request("ping")
    assert env["ok"]


def test_a_cached_program_keeps_its_objects_after_the_client_releases_them(eqx_sidecar):
    server, client = eqx_sidecar
    m, handles, _, _, body = pycall_mlp_program(client)
    args = [HandleRef(h.id) for h in handles] + [np.ones(3, np.float32)]
    first = client.decoded("run", hash=program_hash(body), program=body, args=args, fetch=True)["result"]["outputs"][0]
    refs = [m.fields["activation"].id, m.fields["final_activation"].id]
    client.decoded("free", handles=refs)
    with pytest.raises(WireError):
        handles_of(server).get_object(refs[0])
    again = client.decoded("run", hash=program_hash(body), args=args, fetch=True)
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
