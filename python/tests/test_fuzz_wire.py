"""A property-based fuzzer of the wire (Hypothesis): the decoder answers any
frames with a value or a WireError, never anything else, never a crash;
the dispatcher answers any envelope, for every op, with a reply carrying
the request's id, and keeps serving. The budget is bounded and derandomized
(it runs in `npm test`); every crash it, or a person, ever found is kept
below as an explicit example."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.limits import Limits
from jaxbridge_sidecar.protocol import EXT_ARRAY, EXT_HANDLE, EXT_MODULE, EXT_PYREF, WireError
from jaxbridge_sidecar.server import OPS

from conftest import running_sidecar

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
LIMITS = Limits(max_message_bytes=1 << 20, max_frames=64, max_depth=16)

# Crashes and near-crashes found so far (issue 13 and this fuzzer), kept as examples.
DEEP_MODULE = (lambda: (lambda p: [msgpack.packb({"id": 1, "op": "ping", "v": msgpack.ExtType(EXT_MODULE, p)})])(
    __import__("functools").reduce(lambda acc, _: msgpack.packb(["k", {"f": msgpack.ExtType(EXT_MODULE, acc)}]), range(195), msgpack.packb(["k", {}]))
))()
OVERFLOWING_SHAPE = [msgpack.packb({"id": 2, "op": "put", "value": [msgpack.ExtType(EXT_ARRAY, msgpack.packb(["float32", [2**63, 2**63], 1, 1]))]}), b"\0" * 4]
UNDESCRIBED = [msgpack.packb({"id": 3, "op": "ping"}), *[b"x"] * 60]
BOOL_ID_HANDLE = [msgpack.packb({"id": 4, "op": "get", "value": [msgpack.ExtType(EXT_HANDLE, msgpack.packb([True]))]})]
EXT_IN_MAP_KEY = [b"\x81\xc7\x01\x02\x00\x01"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1), st.floats(allow_nan=True), st.text(max_size=8), st.binary(max_size=8))


def ext_payloads(children):
    array = st.tuples(st.sampled_from(["float32", "int8", "bool", "complex64", "str", 3]), st.lists(st.integers(min_value=-1, max_value=2**40), max_size=4), st.integers(min_value=-1, max_value=5), st.integers(min_value=-1, max_value=5))
    return st.one_of(
        array.map(lambda f: msgpack.ExtType(EXT_ARRAY, msgpack.packb(list(f)))),
        st.lists(scalars, max_size=3).map(lambda f: msgpack.ExtType(EXT_HANDLE, msgpack.packb(f))),
        st.lists(scalars, max_size=3).map(lambda f: msgpack.ExtType(EXT_PYREF, msgpack.packb(f))),
        st.tuples(st.text(max_size=4), st.dictionaries(st.text(max_size=3), children, max_size=3)).map(lambda f: msgpack.ExtType(EXT_MODULE, msgpack.packb(list(f)))),
        st.tuples(st.integers(min_value=0, max_value=127), st.binary(max_size=16)).map(lambda f: msgpack.ExtType(*f)),
    )


values = st.recursive(scalars, lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=4), children, max_size=4), ext_payloads(children)), max_leaves=12)


def packed(value) -> bytes:
    try:
        return msgpack.packb(value, use_bin_type=True)
    except (ValueError, OverflowError, TypeError):
        return b"\xc1"


frames_strategy = st.tuples(values, st.lists(st.binary(max_size=32), max_size=5)).map(lambda t: [packed(t[0]), *t[1]])


@FUZZ
@given(st.one_of(frames_strategy, st.lists(st.binary(max_size=64), min_size=1, max_size=4)))
@example(DEEP_MODULE)
@example(OVERFLOWING_SHAPE)
@example(UNDESCRIBED)
@example(BOOL_ID_HANDLE)
@example(EXT_IN_MAP_KEY)
def test_the_decoder_returns_a_map_or_raises_wire_error(frames):
    try:
        env = protocol.decode(frames, LIMITS)
    except WireError as e:
        assert len(str(e)) < 400, str(e)
        return
    assert isinstance(env, dict)


def envelopes():
    op = st.one_of(st.sampled_from(sorted(OPS)), st.text(max_size=6), scalars)
    fields = st.dictionaries(st.sampled_from(["value", "args", "kwargs", "fn", "handles", "hash", "program", "path", "module", "target", "name", "like", "leaves", "free", "device", "mesh", "spec", "call", "batch", "fetch", "stream", "columns", "method", "arrays", "resent", "resume", "protocol", "sample"]), values, max_size=5)
    return st.tuples(st.integers(min_value=1, max_value=2**32), op, fields, st.lists(st.binary(max_size=16), max_size=3))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """One sidecar for every example: what one example does must not break the next."""
    with running_sidecar(tmp_path_factory.mktemp("fuzz"), max_array_bytes=1 << 24, max_frames=64, max_depth=16) as pair:
        yield pair


@settings(FUZZ, max_examples=120)
@given(st.lists(envelopes(), min_size=1, max_size=4))
@example([(1, "ack", {}, [b""])])  # found here: a malformed ack is answered (an error), so a client must read it
@example([(2, "get", {"value": [msgpack.ExtType(EXT_HANDLE, msgpack.packb([2**64 - 1]))]}, [])])
@example([(3, "call", {"fn": "jax.lax.iota", "args": ["float32", 2**40], "kwargs": {}}, [])])
@example([(4, "free", {"handles": [True, None, 1.5, 2**70]}, [])])
def test_the_dispatcher_answers_every_envelope_and_keeps_serving(fuzzed, batch):
    _server, client = fuzzed
    for rid, op, fields, extra in batch:
        if op == "close":
            continue  # ends the session: checked elsewhere
        env = {**fields, "id": rid, "op": op}
        try:
            head = msgpack.packb(env, use_bin_type=True)
        except (ValueError, OverflowError, TypeError):
            continue
        client.send_raw([head, *extra])
        if op == "ack" and not client.sock.poll(300):
            continue  # one-way: a well-formed ack is answered by nothing
        reply, _ = client.recv(60000)
        if "event" in reply:
            continue
        assert reply["id"] in (rid, None), reply
        assert isinstance(reply["ok"], bool)
        if not reply["ok"]:
            assert isinstance(reply["error"]["type"], str) and isinstance(reply["error"]["message"], str)
    pong, _ = client.request("ping")
    assert pong["result"] == "pong"
