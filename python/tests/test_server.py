"""The sidecar over a real socket: every bad request gets an error reply and
the next request is still served."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

import jax.numpy as jnp

from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.protocol import HandleRef
from jaxbridge_sidecar.sample import handshake_sample


def test_hello_reports_versions_and_echoes_the_sample(sidecar):
    _, client = sidecar
    env = client.decoded("hello", protocol=protocol.PROTOCOL_VERSION, client="pytest", sample=handshake_sample())
    assert env["ok"], env
    r = env["result"]
    assert r["protocol"] == protocol.PROTOCOL_VERSION and r["backend"] == "cpu" and r["x64"] is True
    assert r["devices"][0]["platform"] == "cpu"
    from jaxbridge_sidecar.sample import same

    assert same(r["sample"], handshake_sample())


def test_hello_refuses_another_protocol_version(sidecar):
    _, client = sidecar
    env, _ = client.request("hello", protocol=99, client="pytest")
    assert not env["ok"] and "99" in env["error"]["message"]


def test_put_get_free_round_trip(sidecar):
    server, client = sidecar
    arr = np.arange(12, dtype=np.int64).reshape(3, 4)
    env = client.decoded("put", value=[arr, 5, "static"])
    h, five, s = env["result"]
    assert (h.dtype, h.shape, five, s) == ("int64", (3, 4), 5, "static")
    got = client.decoded("get", value=[HandleRef(h.id)])["result"][0]
    assert got.dtype == np.int64 and np.array_equal(got, arr)
    assert len(server.handles) == 1
    env = client.decoded("free", handles=[h.id, 999])
    assert env["result"] == {"freed": 1, "unknown": [999]}
    assert len(server.handles) == 0


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


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "jax.numpy.load", "jax.config.update", "jax.numpy._src", "subprocess.run", "jax.profiler.start_trace"])
def test_names_outside_the_allow_list_are_refused(sidecar, name):
    _, client = sidecar
    env, _ = client.request("call", fn=name, args=["echo pwned"], kwargs={})
    assert not env["ok"]
    assert env["error"]["type"] == "NotAllowed"
    assert repr(name) in env["error"]["message"] or name in env["error"]["message"]
    env, _ = client.request("ping")
    assert env["result"] == "pong"


def test_python_exceptions_carry_type_message_and_trimmed_traceback(sidecar):
    _, client = sidecar
    env, _ = client.request("call", fn="jax.numpy.matmul", args=[np.ones((2, 3), np.float32), np.ones((2, 3), np.float32)], kwargs={})
    err = env["error"]
    assert err["type"] == "TypeError" and "contracting dimensions" in err["message"]
    assert "jaxbridge_sidecar" not in err["traceback"]


@pytest.mark.parametrize(
    "frames,kind",
    [
        ([b"\xc1"], "ProtocolError"),
        ([msgpack.packb([1, 2, 3])], "ProtocolError"),
        ([msgpack.packb({"id": 7, "op": "teleport"})], "UnknownOp"),
        ([msgpack.packb({"id": 8, "op": "get", "value": [msgpack.ExtType(2, msgpack.packb([12345]))]})], "UnknownHandle"),
        ([msgpack.packb({"id": 9, "op": "put", "value": [msgpack.ExtType(1, msgpack.packb(["float32", [4], 1, 1]))]}), b"\0" * 15], "FrameError"),
        ([msgpack.packb({"id": 10, "op": "put", "value": [msgpack.ExtType(1, msgpack.packb(["str", [1], 1, 1]))]}), b"\0"], "DTypeError"),
        ([msgpack.packb({"id": 11, "op": "put", "value": []}), b"\0" * (65 * 1024 * 1024)], "MessageTooLarge"),
    ],
)
def test_malformed_requests_get_error_replies_and_the_sidecar_keeps_serving(sidecar, frames, kind):
    _, client = sidecar
    client.send_raw(frames)
    env, _ = client.recv()
    assert env["ok"] is False and env["error"]["type"] == kind, env
    sent_id = msgpack.unpackb(frames[0], raw=False, ext_hook=lambda c, d: None) if frames[0] != b"\xc1" else None
    if isinstance(sent_id, dict):
        assert env["id"] == sent_id["id"]
    env, _ = client.request("ping")
    assert env["ok"] and env["result"] == "pong"


def test_unknown_handles_are_named(sidecar):
    _, client = sidecar
    env, _ = client.request("call", fn="jax.numpy.sum", args=[HandleRef(4242)], kwargs={})
    assert env["error"]["type"] == "UnknownHandle" and "4242" in env["error"]["message"]


def test_results_that_are_not_arrays_or_plain_values_come_back_as_pyrefs(sidecar):
    server, client = sidecar
    env = client.decoded("call", fn="jax.tree.structure", args=[[1, 2]], kwargs={})
    ref = env["result"]
    assert isinstance(ref, protocol.PyRefOut) and ref.type.endswith("PyTreeDef") and "PyTreeDef" in ref.repr
    assert server.handles.object_count == 1
    client.decoded("free", handles=[ref.id])
    assert server.handles.object_count == 0


def test_any_request_can_carry_frees(sidecar):
    server, client = sidecar
    h = client.decoded("put", value=[np.zeros(3, np.float32)])["result"][0]
    assert len(server.handles) == 1
    env = client.decoded("ping", free=[h.id, 777])
    assert env["result"] == "pong"
    assert len(server.handles) == 0


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
