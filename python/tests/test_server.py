"""server.py over a real socket: every bad request gets an error reply and
the next request is still served; frees ride on any request; the dispatch
table is the one docs/protocol.md documents."""

from __future__ import annotations

import msgpack
from conftest import handles_of, session_of
import numpy as np
import pytest


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
        ([msgpack.packb({"id": 11, "op": "put", "value": []}), *[b"\0" * (15 * 1024 * 1024)] * 5], "MessageTooLarge"),
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


def test_any_request_can_carry_frees(sidecar):
    server, client = sidecar
    h = client.decoded("put", value=[np.zeros(3, np.float32)])["result"][0]
    assert len(handles_of(server)) == 1
    env = client.decoded("ping", free=[h.id, 777])
    assert env["result"] == "pong"
    assert len(handles_of(server)) == 0


def test_a_large_array_is_put_in_16_mib_frames_and_got_back_in_one(sidecar):
    _, client = sidecar
    arr = np.random.default_rng(3).standard_normal(10 * 1024 * 1024).astype(np.float32)  # 40 MiB
    env, _ = client.request("put", value=[arr])  # the request splits it: 16 + 16 + 8 MiB
    assert env["ok"], env
    h = msgpack.unpackb(env["result"][0].data)[0]
    env, frames = client.request("get", value=[msgpack.ExtType(2, msgpack.packb([h]))])
    assert env["ok"], env
    dtype, shape, first, count = msgpack.unpackb(env["result"][0].data)
    assert (dtype, shape, first, count) == ("float32", [arr.size], 1, 1)
    assert len(frames) == 1 and bytes(frames[0]) == arr.tobytes()


def test_the_doc_lists_exactly_the_ops_of_the_dispatch_table():
    from pathlib import Path
    import re

    from jaxbridge_sidecar.server import OPS

    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    # The op table's rows only: the section "## Ops" up to the next "## " (other sections table error kinds).
    ops_section = doc.split("\n## Ops\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", ops_section, re.M))
    assert documented == set(OPS)


def test_the_dispatch_table_is_the_union_of_the_family_tables_and_refuses_a_clash():
    from jaxbridge_sidecar.server import FAMILIES, OPS, dispatch_table

    assert OPS == {name: fn for family in FAMILIES for name, fn in family.OPS.items()}
    assert sum(len(family.OPS) for family in FAMILIES) == len(OPS)
    with pytest.raises(AssertionError, match="'hello' is defined by two families"):
        dispatch_table((FAMILIES[0], FAMILIES[0]))


def test_each_session_s_host_offers_every_member_of_the_host_protocol(sidecar):
    from jaxbridge_sidecar.ops.host import Host
    from jaxbridge_sidecar.program.pycall import Objects

    server, client = sidecar
    client.request("ping")
    members = {n for cls in (Host, Objects) for n in vars(cls) if not n.startswith("_")}
    assert {"handles", "structures", "allow", "materialize", "export", "device", "start_run", "runs"} <= members
    missing = [n for n in members if not hasattr(session_of(server).host, n)]
    assert missing == []
