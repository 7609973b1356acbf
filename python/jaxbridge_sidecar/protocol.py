"""The wire, version 1. `docs/protocol.md` is authoritative; this module is its
Python half and the only place that packs or unpacks messages."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_dtypes
import msgpack
import numpy as np

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 * 1024 * 1024
EXT_ARRAY = 1
EXT_HANDLE = 2
EXT_PYREF = 3
EXT_MODULE = 4

_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name)
    for name in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
        "uint64", "float16", "float32", "float64", "complex64", "complex128",
    )
}
_DTYPES["bfloat16"] = np.dtype(ml_dtypes.bfloat16)
_NAMES = {dt: name for name, dt in _DTYPES.items()}


# Every error type the sidecar itself sends (the `type` of an error reply that
# is not a Python exception's). docs/protocol.md lists exactly these, checked
# by test/wire/protocol-doc.test.ts through `python -m jaxbridge_sidecar ops`;
# tests/test_error_kinds.py checks that every WireError kind in the sources is
# one of them and each of them is raised somewhere. `NotAllowed` is raised as
# allowlist.NotAllowed and named so by the server.
ERROR_KINDS = (
    "ProtocolError",
    "UnknownOp",
    "FrameError",
    "DTypeError",
    "UnknownHandle",
    "MessageTooLarge",
    "NotAllowed",
    "UnknownProgram",
    "ProgramHashMismatch",
    "ProgramError",
    "ArgumentError",
)


class WireError(Exception):
    """A message that does not follow the protocol. `kind` is the error type the client sees (one of ERROR_KINDS)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def dtype_from_name(name: Any) -> np.dtype:
    try:
        return _DTYPES[name]
    except (KeyError, TypeError):
        raise WireError("DTypeError", f"unsupported dtype {name!r}; expected one of {', '.join(_DTYPES)}") from None


def dtype_name(dtype: Any) -> str:
    try:
        return _NAMES[np.dtype(dtype)]
    except KeyError:
        raise WireError("DTypeError", f"dtype {np.dtype(dtype)} cannot cross the wire") from None


@dataclasses.dataclass(frozen=True, slots=True)
class HandleRef:
    """A handle id as a request names it."""

    id: int


@dataclasses.dataclass(frozen=True, slots=True)
class HandleOut:
    """A handle as a reply describes it; `layout` only for an array on several
    devices (its sharding and addressable shards, see sharding.py)."""

    id: int
    dtype: str
    shape: tuple[int, ...]
    device: str
    layout: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PyRefIn:
    """An opaque Python object the client names by id."""

    id: int


@dataclasses.dataclass(frozen=True, slots=True)
class PyRefOut:
    """An opaque Python object as a reply describes it: id, qualified type, short repr."""

    id: int
    type: str
    repr: str


@dataclasses.dataclass(frozen=True, slots=True)
class ModuleIn:
    """An equinox Module the client sends back: its structure key and its children."""

    key: str
    fields: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class ModuleOut:
    """An equinox Module as a reply describes it: structure key, class, children in field order."""

    key: str
    qualname: str
    fields: dict[str, Any]


def _check_shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise WireError("FrameError", f"array shape must be a list of non-negative integers, got {shape!r}")
    return tuple(shape)


# XLA's CPU client aliases a host buffer aligned to 64 bytes instead of copying
# it, so `device_put` of a received array then costs nothing. Frames arrive at
# whatever address ZeroMQ chose; a large array that is not aligned is copied
# once into an aligned buffer here (a plain memcpy, several times faster than
# device_put's own copy on this path). Small arrays are viewed in place.
HOST_ALIGNMENT = 64
ALIGNED_COPY_MIN_BYTES = 64 * 1024


def aligned_bytes(nbytes: int) -> np.ndarray:
    """An uninitialised uint8 array of `nbytes` whose data is HOST_ALIGNMENT-aligned (its base keeps the allocation alive)."""
    raw = np.empty(nbytes + HOST_ALIGNMENT, dtype=np.uint8)
    off = -raw.ctypes.data % HOST_ALIGNMENT
    return raw[off : off + nbytes]


def _address(buf: memoryview) -> int:
    return np.frombuffer(buf, dtype=np.uint8).ctypes.data if len(buf) else 0


def decode(frames: list[Any], max_message_bytes: int) -> dict[str, Any]:
    """Unpack a request. Arrays become numpy arrays (viewing their frame where
    possible), handles become `HandleRef`. Raises WireError on anything malformed."""
    if not frames:
        raise WireError("ProtocolError", "empty message")
    total = sum(len(memoryview(f)) for f in frames)
    if total > max_message_bytes:
        raise WireError("MessageTooLarge", f"message of {total} bytes exceeds the sidecar's limit of {max_message_bytes} bytes")
    payload = [memoryview(f) for f in frames[1:]]
    used = [False] * len(payload)

    def ext_hook(code: int, data: bytes) -> Any:
        if code == EXT_MODULE:
            try:
                body = msgpack.unpackb(data, raw=False, ext_hook=ext_hook, strict_map_key=True)
            except WireError:
                raise
            except Exception as e:
                raise WireError("ProtocolError", f"module ext payload is not msgpack: {e}") from None
            if not isinstance(body, list) or len(body) != 2 or not isinstance(body[0], str) or not isinstance(body[1], dict):
                raise WireError("ProtocolError", "module ext payload must be [structure_key, {field: value}]")
            return ModuleIn(body[0], body[1])
        try:
            fields = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception as e:
            raise WireError("ProtocolError", f"ext {code} payload is not msgpack: {e}") from None
        if code in (EXT_HANDLE, EXT_PYREF):
            if not isinstance(fields, list) or not fields or not isinstance(fields[0], int):
                raise WireError("ProtocolError", f"ext {code} payload must be [id, ...], got {fields!r}")
            return HandleRef(fields[0]) if code == EXT_HANDLE else PyRefIn(fields[0])
        if code != EXT_ARRAY:
            raise WireError("ProtocolError", f"unknown ext code {code}")
        if not isinstance(fields, list) or len(fields) != 4:
            raise WireError("ProtocolError", f"array ext payload must be [dtype, shape, first_frame, frame_count], got {fields!r}")
        dtype_s, shape_l, first, count = fields
        dtype = dtype_from_name(dtype_s)
        shape = _check_shape(shape_l)
        if not (isinstance(first, int) and isinstance(count, int)) or count < 0 or first < 1 or first - 1 + count > len(payload):
            raise WireError("FrameError", f"array refers to frames {first}..{first + count - 1 if isinstance(first, int) and isinstance(count, int) else '?'}, but the message has frames 1..{len(payload)}")
        parts = payload[first - 1 : first - 1 + count]
        for i in range(first - 1, first - 1 + count):
            if used[i]:
                raise WireError("FrameError", f"frame {i + 1} is claimed by two arrays")
            used[i] = True
        want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        got = sum(len(p) for p in parts)
        if got != want:
            raise WireError("FrameError", f"array of dtype {dtype_s} and shape {list(shape)} needs {want} bytes, its frames hold {got}")
        if count == 1 and (want < ALIGNED_COPY_MIN_BYTES or _address(parts[0]) % HOST_ALIGNMENT == 0):
            return np.frombuffer(parts[0], dtype=dtype).reshape(shape)
        flat = aligned_bytes(want)
        at = 0
        for p in parts:
            flat[at : at + len(p)] = np.frombuffer(p, dtype=np.uint8)
            at += len(p)
        return flat.view(dtype).reshape(shape)

    try:
        env = msgpack.unpackb(frames[0], raw=False, ext_hook=ext_hook, strict_map_key=True)
    except WireError:
        raise
    except Exception as e:
        raise WireError("ProtocolError", f"envelope is not valid msgpack: {e}") from None
    if not isinstance(env, dict):
        raise WireError("ProtocolError", f"envelope must be a map, got {type(env).__name__}")
    if not all(used):
        unused = [i + 1 for i, u in enumerate(used) if not u]
        raise WireError("FrameError", f"frames {unused} are not described by the envelope")
    return env


def peek(frames: list[Any], key: str) -> Any:
    """One envelope field (`op`, `id`), read without decoding arrays, or None:
    to queue runs behind a worker run, and so that even a malformed
    request's error reaches its caller."""
    try:
        env = msgpack.unpackb(frames[0], raw=False, ext_hook=lambda c, d: None, strict_map_key=False)
        return env.get(key) if isinstance(env, dict) else None
    except Exception:
        return None


def array_bytes(arr: np.ndarray) -> memoryview:
    """The array's bytes as a flat view (a copy only when it is not C-contiguous)."""
    arr = np.ascontiguousarray(arr)
    return memoryview(arr.reshape(-1).view(np.uint8))


class Encoder:
    """Packs one reply; arrays found in the value are appended as frames."""

    def __init__(self) -> None:
        self.frames: list[Any] = []

    def _default(self, obj: Any) -> Any:
        if isinstance(obj, PyRefOut):
            return msgpack.ExtType(EXT_PYREF, msgpack.packb([obj.id, obj.type, obj.repr]))
        if isinstance(obj, PyRefIn):
            return msgpack.ExtType(EXT_PYREF, msgpack.packb([obj.id]))
        if isinstance(obj, ModuleOut):
            return msgpack.ExtType(EXT_MODULE, msgpack.packb([obj.key, obj.qualname, obj.fields], default=self._default, use_bin_type=True))
        if isinstance(obj, ModuleIn):
            return msgpack.ExtType(EXT_MODULE, msgpack.packb([obj.key, obj.fields], default=self._default, use_bin_type=True))
        if isinstance(obj, HandleRef):
            return msgpack.ExtType(EXT_HANDLE, msgpack.packb([obj.id]))
        if isinstance(obj, HandleOut):
            fields = [obj.id, obj.dtype, list(obj.shape), obj.device]
            if obj.layout is not None:
                fields.append(obj.layout)
            return msgpack.ExtType(EXT_HANDLE, msgpack.packb(fields))
        if isinstance(obj, np.ndarray):
            name = dtype_name(obj.dtype)
            mv = array_bytes(obj)
            first = len(self.frames) + 1
            for at in range(0, len(mv), MAX_FRAME_BYTES):
                self.frames.append(mv[at : at + MAX_FRAME_BYTES])
            count = len(self.frames) + 1 - first
            return msgpack.ExtType(EXT_ARRAY, msgpack.packb([name, list(obj.shape), first, count]))
        if isinstance(obj, np.generic):
            return self._default(np.asarray(obj))
        if isinstance(obj, tuple):
            return list(obj)
        raise TypeError(f"cannot send a {type(obj).__name__} over the wire")

    def pack(self, envelope: dict[str, Any]) -> list[Any]:
        head = msgpack.packb(envelope, default=self._default, use_bin_type=True, strict_types=False)
        return [head, *self.frames]


def encode(envelope: dict[str, Any]) -> list[Any]:
    return Encoder().pack(envelope)


def walk(value: Any, leaf: Callable[[Any, str], Any], path: str = "") -> Any:
    """Map `leaf` over a wire value's non-container leaves, with JAX-style key paths."""
    if isinstance(value, dict):
        return {k: walk(v, leaf, f"{path}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [walk(v, leaf, f"{path}[{i}]") for i, v in enumerate(value)]
    return leaf(value, path)
