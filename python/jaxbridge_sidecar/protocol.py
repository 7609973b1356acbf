"""The wire, version 2. `docs/protocol.md` is authoritative; this module is its
Python half and the only place that packs or unpacks messages."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_dtypes
import msgpack
import numpy as np

from . import limits
from .limits import Limits

PROTOCOL_VERSION = 2
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
# tests/test_documented_tables.py checks that every WireError kind in the sources is
# one of them and each of them is raised somewhere. `NotAllowed` is raised as
# allowlist.NotAllowed and named so by the server.
ERROR_KINDS = (
    "ProtocolError",
    "UnknownOp",
    "FrameError",
    "DTypeError",
    "UnknownHandle",
    "MessageTooLarge",
    "LimitExceeded",
    "NotAllowed",
    "UnknownProgram",
    "ProgramHashMismatch",
    "ProgramError",
    "ArgumentError",
    "HandleInUse",
    "ReplyLost",
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
        raise WireError("FrameError", f"array shape must be a list of non-negative integers, got {_short(shape)}")
    if len(shape) > limits.MAX_RANK:
        raise WireError("FrameError", f"array shape has {len(shape)} axes; at most {limits.MAX_RANK} are allowed")
    return tuple(shape)


def _short(value: Any, limit: int = 80) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def shape_bytes(shape: tuple[int, ...], itemsize: int) -> int:
    """The bytes an array of this shape takes, as an exact (unbounded) integer: never wraps."""
    n = itemsize
    for d in shape:
        n *= d
    return n


def frame_ranges(numbers: list[int], show: int = 3) -> str:
    """`[2, 3, 4, 9]` as "2..4, 9": a short list however many frames there are."""
    runs: list[tuple[int, int]] = []
    for n in numbers:
        if runs and runs[-1][1] == n - 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    text = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in runs[:show])
    return text + (f" and {len(runs) - show} more runs" if len(runs) > show else "")


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


class _PendingModule:
    """A module ext payload not unpacked yet: decode() expands these after the
    envelope, from an explicit stack, so nesting never recurses in C."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data


def decode(frames: list[Any], lim: Limits) -> dict[str, Any]:
    """Unpack a request. Arrays become numpy arrays (viewing their frame where
    possible), handles become `HandleRef`. Raises WireError on anything
    malformed, and on anything over `lim`, before allocating for it."""
    if not frames:
        raise WireError("ProtocolError", "empty message")
    nframes = len(frames) - 1
    if nframes > lim.max_frames:
        raise WireError("LimitExceeded", limits.exceeded("the message's frame count", str(nframes), "max_frames", str(lim.max_frames)))
    total = 0
    for f in frames:
        total += len(f)
    if total > lim.max_message_bytes:
        raise WireError("MessageTooLarge", limits.exceeded("the message", limits.fmt_bytes(total), "max_message_bytes", limits.fmt_bytes(lim.max_message_bytes)))
    payload = [memoryview(f) for f in frames[1:]]
    used = bytearray(nframes)
    modules = [False]

    def ext_hook(code: int, data: bytes) -> Any:
        if code == EXT_MODULE:
            modules[0] = True
            return _PendingModule(data)
        try:
            fields = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception as e:
            raise WireError("ProtocolError", f"ext {code} payload is not msgpack: {e}") from None
        if code in (EXT_HANDLE, EXT_PYREF):
            if not isinstance(fields, list) or not fields or not isinstance(fields[0], int) or isinstance(fields[0], bool):
                raise WireError("ProtocolError", f"ext {code} payload must be [id, ...], got {_short(fields)}")
            return HandleRef(fields[0]) if code == EXT_HANDLE else PyRefIn(fields[0])
        if code != EXT_ARRAY:
            raise WireError("ProtocolError", f"unknown ext code {code}")
        if not isinstance(fields, list) or len(fields) != 4:
            raise WireError("ProtocolError", f"array ext payload must be [dtype, shape, first_frame, frame_count], got {_short(fields)}")
        dtype_s, shape_l, first, count = fields
        dtype = dtype_from_name(dtype_s)
        shape = _check_shape(shape_l)
        if not (isinstance(first, int) and isinstance(count, int)) or count < 0 or first < 1 or first - 1 + count > nframes:
            span = f"{first}..{first + count - 1}" if isinstance(first, int) and isinstance(count, int) else _short([first, count])
            raise WireError("FrameError", f"array refers to frames {span}, but the message has frames 1..{nframes}")
        want = shape_bytes(shape, dtype.itemsize)
        if want > total:
            raise WireError("FrameError", f"array of dtype {dtype_s} and shape {_short(list(shape))} needs {want} bytes, more than the whole message ({total} bytes)")
        at = first - 1
        got = 0
        for i in range(at, at + count):
            if used[i]:
                raise WireError("FrameError", f"frame {i + 1} is claimed by two arrays")
            used[i] = 1
            got += len(payload[i])
        if got != want:
            raise WireError("FrameError", f"array of dtype {dtype_s} and shape {list(shape)} needs {want} bytes, its frames hold {got}")
        parts = payload[at : at + count]
        if count == 1 and (want < ALIGNED_COPY_MIN_BYTES or _address(parts[0]) % HOST_ALIGNMENT == 0):
            return np.frombuffer(parts[0], dtype=dtype).reshape(shape)
        flat = aligned_bytes(want)
        pos = 0
        for p in parts:
            flat[pos : pos + len(p)] = np.frombuffer(p, dtype=np.uint8)
            pos += len(p)
        return flat.view(dtype).reshape(shape)

    def unpack(data: Any, what: str) -> Any:
        try:
            return msgpack.unpackb(data, raw=False, ext_hook=ext_hook, strict_map_key=True)
        except WireError:
            raise
        except msgpack.StackError:
            raise WireError("LimitExceeded", limits.exceeded(f"the {what}'s nesting", "over msgpack's 1024 levels", "max_depth", str(lim.max_depth))) from None
        except Exception as e:
            raise WireError("ProtocolError", f"{what} is not valid msgpack: {_short(str(e), 200)}") from None

    env = unpack(frames[0], "envelope")
    if not isinstance(env, dict):
        raise WireError("ProtocolError", f"envelope must be a map, got {type(env).__name__}")
    if modules[0] or len(frames[0]) > lim.max_depth:
        _expand(env, lim.max_depth, lambda data: unpack(data, "module ext payload"))
    if nframes and not all(used):
        unused = [i + 1 for i, u in enumerate(used) if not u]
        raise WireError("FrameError", f"{len(unused)} of the message's {nframes} frames are not described by the envelope (frames {frame_ranges(unused)})")
    return env


def _expand(root: dict[str, Any], max_depth: int, unpack: Callable[[bytes], Any]) -> None:
    """Check that `root` nests at most `max_depth` levels and unpack its module
    nodes in place, from an explicit stack: neither a deep value nor deeply
    nested modules recurse (a module node and its fields count as one level).
    It runs on most requests, so it compares types, not isinstance."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > max_depth:
            raise WireError("LimitExceeded", limits.exceeded("a value's nesting", f"deeper than {max_depth} levels", "max_depth", str(max_depth)))
        for k, v in node.items() if type(node) is dict else enumerate(node):
            t = type(v)
            if t is dict or t is list:
                push((v, depth + 1))
            elif t is _PendingModule:
                body = unpack(v.data)
                if type(body) is not list or len(body) != 2 or type(body[0]) is not str or type(body[1]) is not dict:
                    raise WireError("ProtocolError", "module ext payload must be [structure_key, {field: value}]")
                node[k] = ModuleIn(body[0], body[1])
                push((body[1], depth + 1))


def peek(frames: list[Any], key: str) -> Any:
    """One envelope field (`op`, `id`), read without decoding arrays, or None:
    to queue runs behind a worker run, and so that even a malformed
    request's error reaches its caller."""
    try:
        env = msgpack.unpackb(frames[0], raw=False, ext_hook=lambda c, d: None, strict_map_key=False)
        return env.get(key) if isinstance(env, dict) else None
    except Exception:
        return None


# --- coalesced messages (docs/protocol.md "Coalesced messages") -------------------
# A message that carries several requests (or replies) back to back: its first
# frame is exactly the map {"batch": [frames of part 1, frames of part 2, ...]}
# (msgpack writes it as these 7 bytes, then the list), the parts' frames follow.
BATCH_PREFIX = b"\x81\xa5batch"


def is_batch(frame: Any) -> bool:
    """Whether a message's first frame is a coalesced message's header (a request's envelope never is)."""
    buf = frame.buffer if hasattr(frame, "buffer") else frame
    return len(buf) > 7 and buf[:7] == BATCH_PREFIX


def split_batch(frames: list[Any], lim: Limits) -> list[list[Any]]:
    """The parts of a coalesced message, each the frames of one request, in order."""
    nframes = len(frames) - 1
    if nframes > lim.max_frames:
        raise WireError("LimitExceeded", limits.exceeded("the message's frame count", str(nframes), "max_frames", str(lim.max_frames)))
    try:
        head = msgpack.unpackb(frames[0], raw=False, strict_map_key=True, max_array_len=lim.max_frames)
    except Exception as e:
        raise WireError("ProtocolError", f"a coalesced message's header is not msgpack: {_short(e)}") from None
    counts = head.get("batch") if isinstance(head, dict) and len(head) == 1 else None
    if not isinstance(counts, list) or not counts or not all(type(n) is int and n >= 1 for n in counts) or sum(counts) != nframes:
        raise WireError("ProtocolError", f"a coalesced message's header must be {{batch: [frame counts >= 1]}} summing to its {nframes} other frames, got {_short(head)}")
    parts: list[list[Any]] = []
    at = 1
    for n in counts:
        parts.append(frames[at : at + n])
        at += n
    return parts


def pack_batch(messages: list[list[Any]]) -> list[Any]:
    """One message carrying `messages` (each a list of frames) in order."""
    head = msgpack.packb({"batch": [len(m) for m in messages]})
    return [head, *(f for m in messages for f in m)]


def array_bytes(arr: np.ndarray) -> memoryview:
    """The array's bytes as a flat view (a copy only when it is not C-contiguous)."""
    arr = np.ascontiguousarray(arr)
    return memoryview(arr.reshape(-1).view(np.uint8))


# A reply's array travels in one frame however large (REPLY_FRAME_BYTES): the
# client's socket sets no frame limit, and an array split over frames costs
# the client a copy of every byte into freshly faulted memory to join them
# (measured at 64 MiB: 35 ms of a 90 ms get; in one frame the client views
# it in place). Requests keep MAX_FRAME_BYTES, under the sidecar's own
# per-frame receive limit.
REPLY_FRAME_BYTES: int | None = None


class Encoder:
    """Packs one message; arrays found in the value are appended as frames of
    at most `frame_bytes` each (None: one frame per array)."""

    def __init__(self, frame_bytes: int | None = MAX_FRAME_BYTES) -> None:
        self.frames: list[Any] = []
        self.frame_bytes = frame_bytes

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
            step = self.frame_bytes or max(len(mv), 1)
            for at in range(0, len(mv), step):
                self.frames.append(mv[at : at + step])
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


def encode(envelope: dict[str, Any], frame_bytes: int | None = MAX_FRAME_BYTES) -> list[Any]:
    return Encoder(frame_bytes).pack(envelope)


def encode_reply(envelope: dict[str, Any]) -> list[Any]:
    """A reply to a request: its arrays in one frame each (REPLY_FRAME_BYTES)."""
    return Encoder(REPLY_FRAME_BYTES).pack(envelope)


def walk(value: Any, leaf: Callable[[Any, str], Any], path: str = "") -> Any:
    """Map `leaf` over a wire value's non-container leaves, with JAX-style key paths."""
    if isinstance(value, dict):
        return {k: walk(v, leaf, f"{path}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [walk(v, leaf, f"{path}[{i}]") for i, v in enumerate(value)]
    return leaf(value, path)
