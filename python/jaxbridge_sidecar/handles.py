"""The handle table: ids the client holds for arrays that stay on the device,
and for opaque Python objects (PyRefs) it keeps as static leaves.

Arrays and objects share one id space, so one batched `free` serves both.
Objects are deduplicated by identity and reference-counted: the client holds
one PyRef per id and releases every extra copy it is sent, which keeps a
free racing with a reply that names the same object correct.

Each session has its own table (sessions.py). Ids the sidecar assigns are
random in [2**32, 2**53): unguessable, exact as JavaScript numbers, and
disjoint from the ids a client chooses for itself, which are in [1, 2**32):
the `out` of a request (docs/protocol.md "Client-chosen handles"), so that a
client can name a result before the request that makes it has run. A request
that fails poisons the ids it should have filled: naming one raises the
original error again, until the client frees it.

The table keeps its own accounting (`memory`): arrays held, their bytes per
device and the peak, counting an array held under several ids once."""

from __future__ import annotations

import random
import secrets
from typing import Any, Callable, Iterable

import jax
import numpy as np

from .protocol import HandleOut, HandleRef, PyRefOut, WireError, dtype_name, walk
from .sharding import layout


# Server-assigned ids: [SERVER_ID_MIN, SERVER_ID_MAX). Client-chosen ids: [1, SERVER_ID_MIN).
SERVER_ID_MIN = 2**32
SERVER_ID_MAX = 2**53


def _client_id(hid: Any) -> bool:
    return isinstance(hid, int) and not isinstance(hid, bool) and 1 <= hid < SERVER_ID_MIN


class PoisonedHandle(Exception):
    """A request named an id whose producing request failed. The client sees
    the original error's type, message and traceback, the message followed by
    the request that raised it (see remote_errors.error_body). `body` and
    `request` are the original's, so that poison passed down a chain names
    the first failure and does not grow."""

    def __init__(self, hid: int, body: dict[str, Any], request: Any):
        self.hid = hid
        self.body = body
        self.request = request
        self.reply_body = {**body, "message": f"{body.get('message', '')} (produced by request {request}, which failed; handle {hid} holds no array)"}
        super().__init__(self.reply_body["message"])


class HandleTable:
    def __init__(self) -> None:
        self._arrays: dict[int, jax.Array] = {}
        # How many live ids name each array object (the same array can be put twice).
        self._array_refs: dict[int, int] = {}
        self._objects: dict[int, Any] = {}
        self._object_ids: dict[int, int] = {}
        self._object_counts: dict[int, int] = {}
        # Client-chosen ids whose request failed: the error body and the request id.
        self._poison: dict[int, tuple[dict[str, Any], Any]] = {}
        # Accounting over distinct array objects: total bytes, bytes per device, the peak.
        self._bytes = 0
        self._peak = 0
        self._device_bytes: dict[str, int] = {}
        # Each held array's (device, bytes) pairs, by id(array), so a free need not ask JAX again.
        self._footprints: dict[int, tuple[tuple[str, int], ...]] = {}
        # Seeded from the system's randomness, one generator per table (per
        # session): another session cannot guess these ids, and drawing one
        # costs no system call (os.urandom per id did, measurably).
        self._rng = random.Random(secrets.randbits(128))

    def _new_id(self) -> int:
        while True:
            hid = SERVER_ID_MIN + self._rng.getrandbits(52)  # [2**32, 2**32 + 2**52): inside the range
            if hid not in self._arrays and hid not in self._objects:
                return hid

    def add(self, arr: jax.Array) -> HandleOut:
        hid = self._new_id()
        self._hold(hid, arr)
        return describe(hid, arr)

    def _hold(self, hid: int, arr: jax.Array) -> None:
        self._arrays[hid] = arr
        refs = self._array_refs.get(id(arr), 0)
        self._array_refs[id(arr)] = refs + 1
        if refs == 0:
            fp = self._footprints[id(arr)] = _footprint(arr)
            self._account(fp, 1)

    def _account(self, footprint: tuple[tuple[str, int], ...], sign: int) -> None:
        for device, n in footprint:
            self._device_bytes[device] = self._device_bytes.get(device, 0) + sign * n
            self._bytes += sign * n
        if self._bytes > self._peak:
            self._peak = self._bytes

    # --- client-chosen ids ------------------------------------------------------
    def check_out(self, ids: Any) -> list[int]:
        """The `out` field of a request: distinct client ids, none in use."""
        if not isinstance(ids, list) or not all(_client_id(h) for h in ids):
            raise WireError("ProtocolError", f"`out` must be a list of integer handle ids in [1, 2**32) (the range clients choose from), got {ids!r}")
        if len(set(ids)) != len(ids):
            raise WireError("ProtocolError", f"`out` names an id twice: {ids!r}")
        used = [h for h in ids if h in self._arrays or h in self._objects or h in self._poison]
        if used:
            raise WireError("HandleInUse", f"`out` ids {used} are already in use (free them first)")
        return ids

    def store(self, ids: list[int], arrays: list[jax.Array]) -> None:
        """Hold each array at the client-chosen id of the same position."""
        if len(ids) != len(arrays):
            raise WireError("ArgumentError", f"`out` names {len(ids)} ids but the request produced {len(arrays)} arrays")
        for hid, arr in zip(ids, arrays):
            self._hold(hid, arr)

    def poison(self, ids: Any, error: BaseException, body: dict[str, Any], request: Any) -> None:
        """Mark the ids failed request `request` should have filled with its
        error (ids holding something are left alone). An error that repeats a
        poisoned handle's passes on the original error and request."""
        if not isinstance(ids, list):
            return
        if isinstance(error, PoisonedHandle):
            body, request = error.body, error.request
        for hid in ids:
            if _client_id(hid) and hid not in self._arrays and hid not in self._objects:
                self._poison[hid] = (body, request)

    def _poisoned(self, hid: int) -> None:
        hit = self._poison.get(hid)
        if hit is not None:
            raise PoisonedHandle(hid, *hit)

    def place(self, value: Any, put: Callable[[Any], jax.Array]) -> Any:
        """`value` (a request's wire value) with each array leaf, a host array
        or a handle's array, replaced by the handle of `put(array)`. Handles
        are added once every placed array is ready, so a failed placement
        leaves nothing behind in the table."""
        placed: list[jax.Array] = []

        def pick(v: Any, _path: str) -> Any:
            if isinstance(v, np.ndarray):
                placed.append(put(v))
            elif isinstance(v, HandleRef):
                placed.append(put(self.get(v.id)))
            else:
                return v
            return _Slot(len(placed) - 1)

        picked = walk(value, pick)
        jax.block_until_ready(placed)
        return walk(picked, lambda v, _p: self.add(placed[v.index]) if isinstance(v, _Slot) else v)

    def get(self, hid: int) -> jax.Array:
        try:
            return self._arrays[hid]
        except (KeyError, TypeError):
            self._poisoned(hid)
            if hid in self._objects:
                raise WireError("UnknownHandle", f"handle {hid} names a Python object, not an array") from None
            raise WireError("UnknownHandle", f"handle {hid} is not in this session's table (freed, or from another session or sidecar)") from None

    def add_object(self, obj: Any) -> PyRefOut:
        hid = self._object_ids.get(id(obj))
        if hid is None:
            hid = self._new_id()
            self._objects[hid] = obj
            self._object_ids[id(obj)] = hid
            self._object_counts[hid] = 0
        self._object_counts[hid] += 1
        t = type(obj)
        return PyRefOut(hid, f"{t.__module__}.{t.__qualname__}", _short_repr(obj))

    def get_object(self, hid: int) -> Any:
        try:
            return self._objects[hid]
        except (KeyError, TypeError):
            self._poisoned(hid)
            raise WireError("UnknownHandle", f"object reference {hid} is not in this session's table (released, or from another session or sidecar)") from None

    def free(self, ids: Iterable[Any]) -> tuple[int, list[Any]]:
        freed, unknown = 0, []
        for hid in ids:
            if not isinstance(hid, int):
                unknown.append(hid)
            elif hid in self._arrays:
                arr = self._arrays.pop(hid)
                freed += 1
                left = self._array_refs[id(arr)] - 1
                if left:
                    self._array_refs[id(arr)] = left
                else:
                    del self._array_refs[id(arr)]
                    self._account(self._footprints.pop(id(arr)), -1)
                    # Release device memory now rather than when the GC finds it.
                    try:
                        arr.delete()
                    except Exception:
                        pass
            elif hid in self._objects:
                freed += 1
                self._object_counts[hid] -= 1
                if self._object_counts[hid] == 0:
                    obj = self._objects.pop(hid)
                    del self._object_counts[hid]
                    del self._object_ids[id(obj)]
            elif hid in self._poison:
                del self._poison[hid]
                freed += 1
            else:
                unknown.append(hid)
        return freed, unknown

    def clear(self) -> int:
        """Free everything (the session ended); returns how many ids were held."""
        ids = [*self._arrays, *self._objects]
        for hid in list(self._objects):
            self._object_counts[hid] = 1
        self.free(ids)
        return len(ids)

    def __len__(self) -> int:
        return len(self._arrays)

    @property
    def object_count(self) -> int:
        return len(self._objects)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._arrays.values())

    def memory(self) -> dict[str, Any]:
        """The `memory` op's reply: arrays held (by id), bytes of the distinct
        arrays in total and per device, the peak of that total, and the
        objects and poisoned ids held."""
        return {
            "arrays": len(self._arrays),
            "bytes": self._bytes,
            "devices": {d: n for d, n in self._device_bytes.items() if n},
            "peak_bytes": self._peak,
            "objects": len(self._objects),
            "poisoned": len(self._poison),
        }


class _Slot:
    """Where `place` found an array leaf (a wire value never holds one)."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


# The wire name of each sharding's device ("cpu:0"), or None when it spans
# several: a handle is described on every reply that makes one, and naming a
# device costs more than the rest of the description. Shardings are few
# (one per device and layout) and immutable.
_ONE_DEVICE: dict[Any, str | None] = {}


def _one_device(arr: jax.Array) -> str | None:
    sharding = arr.sharding
    try:
        return _ONE_DEVICE[sharding]
    except KeyError:
        devices = arr.devices()
        name = str(next(iter(devices))) if len(devices) == 1 else None
        if len(_ONE_DEVICE) < 4096:
            _ONE_DEVICE[sharding] = name
        return name


def _footprint(arr: jax.Array) -> tuple[tuple[str, int], ...]:
    """(device, bytes) for each device holding part of `arr` (a replicated array counts on each)."""
    device = _one_device(arr)
    if device is not None:
        return ((device, arr.nbytes),)
    return tuple((str(s.device), int(s.data.nbytes)) for s in arr.addressable_shards)


def describe(hid: int, arr: jax.Array) -> HandleOut:
    where = layout(arr)
    if where is None:
        device = _one_device(arr)
        if device is None:
            device = f"sharded({len(arr.devices())})"
    else:
        n = arr.sharding.num_devices
        device = str(next(iter(arr.sharding.device_set))) if n == 1 else f"sharded({n})"
    return HandleOut(hid, dtype_name(arr.dtype), arr.shape, device, where)


def _short_repr(obj: Any, limit: int = 120) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if isinstance(name, str) and callable(obj):
        # Wrapped functions (custom_jvp, jit, partial) print as their target's name.
        mod = getattr(obj, "__module__", None)
        return f"<{type(obj).__name__} {mod + '.' if isinstance(mod, str) else ''}{name}>"
    try:
        r = repr(obj)
    except Exception:
        r = f"<{type(obj).__qualname__}>"
    return r if len(r) <= limit else r[: limit - 3] + "..."
