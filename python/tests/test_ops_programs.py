"""ops/programs.py over a real socket: `run` keeps results on the device,
refuses what it cannot lower and keeps serving; `pycall_shapes` types a
remote call with `jax.eval_shape`, and a program calling it equals equinox."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxbridge_sidecar.program import program_hash
from jaxbridge_sidecar.protocol import HandleOut, HandleRef

from programs_support import Builder, aval, expected, f32, mlp_program
from remote_support import _av, _remote, pycall_mlp_program, template


def test_a_refused_primitive_is_not_allowed_and_the_sidecar_keeps_serving(sidecar):
    _, client = sidecar
    b = Builder(aval("float32", 2))
    b.eq("os.system", [0], {}, [aval("float32", 2)])
    data = b.bytes([1])
    env = client.decoded("run", hash=program_hash(data), program=data, args=[np.ones(2, np.float32)])
    assert not env["ok"] and env["error"]["type"] == "NotAllowed" and "'os.system'" in env["error"]["message"]
    assert client.decoded("ping")["result"] == "pong"
    bad = b"{not json"
    env = client.decoded("run", hash=program_hash(bad), program=bad, args=[])
    assert env["error"]["type"] == "ProgramError"
    assert client.decoded("ping")["result"] == "pong"


def test_arguments_travel_as_handles_and_results_stay_on_the_device(sidecar):
    server, client = sidecar
    data = mlp_program()
    x = np.random.default_rng(2).standard_normal((2, 3))
    w = np.random.default_rng(3).standard_normal((3, 4))
    hx, hw = client.decoded("put", value=[x, w])["result"]
    env = client.decoded("run", hash=program_hash(data), program=data, args=[HandleRef(hx.id), HandleRef(hw.id)], fetch=False)
    out = env["result"]["outputs"][0]
    assert isinstance(out, HandleOut) and out.dtype == "float64" and out.shape == (2, 4)
    got = client.decoded("get", value=[HandleRef(out.id)])["result"][0]
    assert np.array_equal(got, expected(x, w))
    env = client.decoded("run", hash=program_hash(data), args=[HandleRef(hx.id), np.ones(3)], fetch=True)
    assert env["error"]["type"] == "ArgumentError" and "argument 1" in env["error"]["message"]


def test_a_run_without_callbacks_still_replies_inline(sidecar):
    server, client = sidecar
    b = Builder(aval("float32"))
    (o,) = b.eq("add", [0, f32(1.0)], {}, [aval("float32")])
    data = b.bytes([o])
    env = client.decoded("run", hash=program_hash(data), program=data, args=[np.array(1, np.float32)], fetch=True)
    assert env["ok"] and float(env["result"]["outputs"][0]) == 2.0
    assert list(server.runs) == [], "a run without callbacks opened no run on a worker"


def test_shapes_come_from_eval_shape_and_a_program_with_pycall_matches_equinox(eqx_sidecar):
    _, client = eqx_sidecar
    m, handles, node, arrays, body = pycall_mlp_program(client)
    shapes = client.decoded("pycall_shapes", target=node, args=["array"], method="__call__", arrays=arrays)["result"]
    assert shapes == {"tree": "array", "outputs": [{"dtype": "float64", "shape": [2], "weak": False}]}
    x = np.array([1.0, -2.0, 0.5], np.float32)
    env = client.decoded("run", hash=program_hash(body), program=body, args=[HandleRef(h.id) for h in handles] + [x], fetch=True)
    assert env["ok"], env
    want = eqx.nn.MLP(3, 2, 4, 2, key=jax.random.PRNGKey(0))(jnp.asarray(x))
    np.testing.assert_array_equal(env["result"]["outputs"][0], np.asarray(want))


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
    _, _, node, arrays, _ = pycall_mlp_program(client)

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
