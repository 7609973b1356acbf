"""Decoding that cannot crash, and sizes checked before anything is
allocated: nested module nodes, deep values, overflowing shapes, frame
counts, message bytes and frame sizes on ipc:// as on tcp://, and arrays a
call or a program would create. Each refusal is one short line naming the
limit and the option that raises it. The requests that crashed the sidecar
(SIGSEGV, SIGFPE) go to a sidecar in a process of its own."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.limits import Limits
from jaxbridge_sidecar.program import program_hash
from jaxbridge_sidecar.protocol import EXT_ARRAY, EXT_MODULE, WireError

from conftest import Client, sidecar_process
from programs_support import Builder, aval


def nested_modules(depth: int) -> bytes:
    payload = msgpack.packb(["k", {}])
    for _ in range(depth):
        payload = msgpack.packb(["k", {"f": msgpack.ExtType(EXT_MODULE, payload)}])
    return msgpack.packb({"id": 1, "op": "ping", "value": msgpack.ExtType(EXT_MODULE, payload)})


def short(message: str) -> bool:
    return len(message) < 300 and "\n" not in message


@pytest.mark.parametrize("depth", [195, 5000])
def test_deeply_nested_module_nodes_are_refused_and_the_sidecar_lives(tmp_path, depth):
    with sidecar_process(tmp_path) as (proc, client, _):
        client.send_raw([nested_modules(depth)])
        env, _ = client.recv(60000)
        assert env["ok"] is False and env["error"]["type"] == "LimitExceeded", env
        assert "--max-depth" in env["error"]["message"] and short(env["error"]["message"])
        assert client.request("ping")[0]["result"] == "pong"
        assert proc.poll() is None


def test_modules_nested_within_the_limit_still_decode():
    env = protocol.decode([nested_modules(10)], Limits())
    node = env["value"]
    for _ in range(10):
        node = node.fields["f"]
    assert isinstance(node, protocol.ModuleIn) and node.fields == {}


def test_deep_lists_are_refused_naming_the_limit():
    deep: list = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(WireError) as e:
        protocol.decode([msgpack.packb({"id": 1, "op": "ping", "value": deep})], Limits(max_depth=64))
    assert e.value.kind == "LimitExceeded" and "--max-depth" in str(e.value) and short(str(e.value))
    protocol.decode([msgpack.packb({"id": 1, "op": "ping", "value": deep})], Limits(max_depth=128))
    with pytest.raises(WireError) as e:
        protocol.decode([b"\x81\xa1v" + b"\x91" * 5000 + b"\xc0"], Limits())
    assert e.value.kind in ("LimitExceeded", "ProtocolError") and short(str(e.value))


@pytest.mark.parametrize("shape", [[2**62, 2**62], [2**64 - 1], [2**40] * 3])
def test_a_shape_whose_size_overflows_gets_a_size_error(shape):
    env = msgpack.packb({"id": 1, "op": "put", "value": [msgpack.ExtType(EXT_ARRAY, msgpack.packb(["float32", shape, 1, 1]))]})
    with pytest.raises(WireError) as e:
        protocol.decode([env, b"\0" * 4], Limits())
    assert e.value.kind == "FrameError" and "bytes" in str(e.value) and "msgpack" not in str(e.value)


def test_a_shape_with_too_many_axes_is_refused():
    env = msgpack.packb({"id": 1, "op": "put", "value": [msgpack.ExtType(EXT_ARRAY, msgpack.packb(["float32", [1] * 65, 1, 1]))]})
    with pytest.raises(WireError, match="65 axes"):
        protocol.decode([env, b"\0" * 4], Limits())


def test_ten_thousand_undescribed_frames_get_a_short_error(sidecar):
    _, client = sidecar
    client.send_raw([msgpack.packb({"id": 5, "op": "ping"}), *[b"x"] * 10_000])
    env, _ = client.recv()
    assert env["id"] == 5 and env["error"]["type"] == "FrameError"
    assert short(env["error"]["message"]) and "10000" in env["error"]["message"], env["error"]["message"]


def test_frame_counts_and_message_bytes_over_the_limits_name_their_option():
    with pytest.raises(WireError) as e:
        protocol.decode([msgpack.packb({"id": 1}), *[b""] * 11], Limits(max_frames=10))
    assert e.value.kind == "LimitExceeded" and "--max-frames" in str(e.value) and short(str(e.value))
    with pytest.raises(WireError) as e:
        protocol.decode([msgpack.packb({"id": 1}), b"\0" * 2048], Limits(max_message_bytes=1024))
    assert e.value.kind == "MessageTooLarge" and "--max-message-bytes" in str(e.value) and short(str(e.value))


def test_an_oversized_frame_is_dropped_by_libzmq_on_ipc_too(tmp_path):
    import zmq

    with sidecar_process(tmp_path, "--max-recv-frame-bytes", str(1 << 20)) as (proc, client, endpoint):
        before = client.decoded("stats")["result"]["requests"]
        other = Client(endpoint)
        monitor = other.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        try:
            other.send_raw([msgpack.packb({"id": 1, "op": "ping"}), b"\0" * (2 << 20)])
            assert monitor.poll(10000), "the peer was not disconnected"
        finally:
            other.sock.disable_monitor()
            monitor.close(0)
            other.close()
        assert client.decoded("stats")["result"]["requests"] == before + 1, "the oversized message reached the sidecar"


CRASHERS = [
    ("jax.lax.iota", ["float32", 2**36], {}),
    ("jax.numpy.arange", [2**36], {"dtype": "float32"}),
    ("jax.numpy.zeros", [[2**40]], {}),
    ("jax.numpy.eye", [2**18], {}),
    ("jax.lax.broadcast_in_dim", [np.float32(1), [2**20, 2**20], []], {}),
]


def test_array_creators_over_the_memory_budget_are_refused_before_jax_sees_them(tmp_path):
    with sidecar_process(tmp_path, "--max-array-bytes", str(1 << 30)) as (proc, client, _):
        for fn, args, kwargs in CRASHERS:
            env = client.decoded("call", fn=fn, args=args, kwargs=kwargs)
            assert env["ok"] is False and env["error"]["type"] == "LimitExceeded", (fn, env)
            assert "--max-array-bytes" in env["error"]["message"] and short(env["error"]["message"]), env["error"]["message"]
        key = client.decoded("call", fn="jax.random.PRNGKey", args=[0], kwargs={})["result"]
        env = client.decoded("call", fn="jax.random.normal", args=[protocol.HandleRef(key.id), [2**36]], kwargs={})
        assert env["error"]["type"] == "LimitExceeded", env
        # The size may come in an array too.
        env = client.decoded("call", fn="jax.numpy.arange", args=[np.array(2**36, np.int64)], kwargs={"dtype": "float32"})
        assert env["error"]["type"] == "LimitExceeded", env
        # Within the budget they work, and the verdict is kept per signature.
        ok = client.decoded("call", fn="jax.numpy.arange", args=[5], kwargs={"dtype": "float32"}, fetch=True)
        assert ok["ok"] and ok["result"].tolist() == [0, 1, 2, 3, 4]
        assert client.decoded("call", fn="jax.numpy.arange", args=[5], kwargs={"dtype": "float32"}, fetch=True)["ok"]
        assert proc.poll() is None


def test_a_program_that_would_create_an_array_over_the_budget_is_refused(tmp_path):
    b = Builder()
    (o,) = b.eq("iota", [], {"dtype": "float32", "shape": [2**40], "dimension": 0, "sharding": None}, [aval("float32", 2**40)])
    data = b.bytes([o])
    with sidecar_process(tmp_path, "--max-array-bytes", str(1 << 30)) as (proc, client, _):
        env = client.decoded("run", hash=program_hash(data), program=data, args=[])
        assert env["ok"] is False and env["error"]["type"] == "LimitExceeded", env
        assert "iota" in env["error"]["message"] and "--max-array-bytes" in env["error"]["message"]
        assert proc.poll() is None
