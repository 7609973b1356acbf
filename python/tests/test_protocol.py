"""The Python half of the wire: what goes out decodes back bit for bit, and
malformed input is refused with the right error kind."""

from __future__ import annotations

import ml_dtypes
import msgpack
import numpy as np
import pytest

from jaxbridge_sidecar import protocol
from jaxbridge_sidecar.limits import Limits

BIG = Limits(max_message_bytes=1 << 40)
from jaxbridge_sidecar.protocol import WireError

ALL = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "bfloat16", "float32", "float64", "complex64", "complex128"]


def _random(dtype: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    dt = protocol.dtype_from_name(dtype)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * dt.itemsize, dtype=np.uint8)
    arr = raw.view(dt).reshape(shape) if raw.size else np.zeros(shape, dt)
    return arr if dtype != "bool" else (arr.view(np.uint8) & 1).astype(bool)


def _roundtrip(value):
    frames = protocol.encode({"id": 1, "op": "get", "value": value})
    return protocol.decode([bytes(f) for f in frames], BIG)["value"]


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 0, 3), (4, 5)])
def test_every_dtype_and_shape_round_trips_bit_exactly(dtype, shape):
    arr = _random(dtype, shape, np.random.default_rng(hash((dtype, shape)) % 2**32))
    back = _roundtrip(arr)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.tobytes() == arr.tobytes()


def test_bfloat16_is_the_ml_dtypes_type():
    assert protocol.dtype_from_name("bfloat16") == np.dtype(ml_dtypes.bfloat16)


def test_large_arrays_split_into_16_mib_frames():
    arr = np.arange(10 * 1024 * 1024, dtype=np.float32)  # 40 MiB
    frames = protocol.encode({"id": 1, "op": "get", "value": arr})
    assert [len(memoryview(f)) for f in frames[1:]] == [16 << 20, 16 << 20, 8 << 20]
    back = protocol.decode([bytes(f) for f in frames], BIG)["value"]
    assert np.array_equal(back, arr)


@pytest.mark.parametrize("dtype", ["bool", "int8", "bfloat16", "float32", "int64", "complex128"])
def test_replies_carry_each_array_in_one_frame_viewing_its_memory(dtype):
    rng = np.random.default_rng(7)
    big = _random(dtype, (40 * 1024 * 1024 // protocol.dtype_from_name(dtype).itemsize,), rng)  # 40 MiB
    small, empty, scalar = _random(dtype, (3, 2), rng), np.zeros((0, 4), big.dtype), _random(dtype, (), rng)
    frames = protocol.encode_reply({"id": 1, "ok": True, "result": [small, big, empty, scalar]})
    # One frame per non-empty array, in order, each the array's own bytes (no copy).
    assert [len(memoryview(f)) for f in frames[1:]] == [small.nbytes, big.nbytes, scalar.nbytes]
    assert np.shares_memory(np.frombuffer(frames[2], np.uint8), big.view(np.uint8))
    back = protocol.decode([bytes(f) for f in frames], BIG)["result"]
    for got, want in zip(back, [small, big, empty, scalar]):
        assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("offset", [0, 8, 40])
@pytest.mark.parametrize("mib", [1, 20])
def test_large_arrays_decode_64_byte_aligned_so_device_put_copies_nothing(offset, mib):
    import jax

    arr = np.arange(mib * 256 * 1024, dtype=np.float32)
    frames = protocol.encode({"id": 1, "op": "put", "value": arr})
    # Frames as ZeroMQ hands them over: at any address.
    moved = []
    for f in frames:
        raw = bytearray(len(memoryview(f)) + 64)
        base = np.frombuffer(raw, np.uint8).ctypes.data
        at = (offset - base) % 64
        raw[at : at + len(memoryview(f))] = bytes(f)
        moved.append(memoryview(raw)[at : at + len(memoryview(f))])
    back = protocol.decode(moved, BIG)["value"]
    assert np.array_equal(back, arr)
    assert back.ctypes.data % protocol.HOST_ALIGNMENT == 0
    on_device = jax.device_put(back)
    if jax.default_backend() == "cpu":
        assert on_device.unsafe_buffer_pointer() == back.ctypes.data, "XLA's CPU client aliases the aligned host buffer"
    assert np.array_equal(np.asarray(on_device), arr)


def test_small_arrays_are_views_of_their_frame():
    frames = protocol.encode({"id": 1, "op": "put", "value": np.arange(16, dtype=np.int32)})
    data = [bytes(f) for f in frames]
    back = protocol.decode(data, BIG)["value"]
    assert back.base is not None and not back.flags.writeable, "a view of the (read-only) frame, not a copy"


def _array_ext(dtype, shape, first, count):
    return msgpack.ExtType(protocol.EXT_ARRAY, msgpack.packb([dtype, shape, first, count]))


@pytest.mark.parametrize(
    "fields,frames,kind",
    [
        (["float32", [3], 1, 1], [b"\0" * 11], "FrameError"),
        (["float32", [3], 1, 2], [b"\0" * 12], "FrameError"),
        (["object", [1], 1, 1], [b"\0" * 8], "DTypeError"),
        (["float32", [-1], 1, 1], [b"\0" * 4], "FrameError"),
        (["float32", [1], 1, 1], [b"\0" * 4, b"extra"], "FrameError"),
    ],
)
def test_bad_arrays_are_refused(fields, frames, kind):
    env = msgpack.packb({"id": 1, "op": "put", "value": [_array_ext(*fields)]})
    with pytest.raises(WireError) as e:
        protocol.decode([env, *frames], BIG)
    assert e.value.kind == kind


def test_a_frame_claimed_twice_is_refused():
    env = msgpack.packb({"id": 1, "op": "put", "value": [_array_ext("int8", [1], 1, 1), _array_ext("int8", [1], 1, 1)]})
    with pytest.raises(WireError, match="claimed by two"):
        protocol.decode([env, b"\x01"], BIG)


def test_oversized_messages_are_refused_before_decoding():
    with pytest.raises(WireError) as e:
        protocol.decode([b"\x80", b"\0" * 100], Limits(max_message_bytes=50))
    assert e.value.kind == "MessageTooLarge"


def test_envelope_must_be_a_map():
    with pytest.raises(WireError) as e:
        protocol.decode([msgpack.packb([1, 2])], Limits(max_message_bytes=1 << 20))
    assert e.value.kind == "ProtocolError"


def test_doc_version_matches_the_code():
    from pathlib import Path
    import re

    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    assert int(re.search(r"^Protocol version: (\d+)$", doc, re.M).group(1)) == protocol.PROTOCOL_VERSION
