"""The handle table: ids the client holds for arrays that stay on the device,
and for opaque Python objects (PyRefs) it keeps as static leaves.

Arrays and objects share one id space, so one batched `free` serves both.
Objects are deduplicated by identity and reference-counted: the client holds
one PyRef per id and releases every extra copy it is sent, which keeps a
free racing with a reply that names the same object correct.

Each session has its own table (sessions.py). Ids the sidecar assigns are
random in [2**32, 2**53): unguessable, exact as JavaScript numbers, and
disjoint from the ids a client may choose for itself, which are below 2**32."""

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


class HandleTable:
    def __init__(self) -> None:
        self._arrays: dict[int, jax.Array] = {}
        # How many live ids name each array object (the same array can be put twice).
        self._array_refs: dict[int, int] = {}
        self._objects: dict[int, Any] = {}
        self._object_ids: dict[int, int] = {}
        self._object_counts: dict[int, int] = {}
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
        self._arrays[hid] = arr
        self._array_refs[id(arr)] = self._array_refs.get(id(arr), 0) + 1
        return describe(hid, arr)

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
        except KeyError:
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
        except KeyError:
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


class _Slot:
    """Where `place` found an array leaf (a wire value never holds one)."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


def describe(hid: int, arr: jax.Array) -> HandleOut:
    where = layout(arr)
    s = arr.sharding
    n = 1 if where is None else s.num_devices
    device = str(next(iter(s.device_set))) if n == 1 else f"sharded({n})"
    return HandleOut(hid, dtype_name(arr.dtype), tuple(int(d) for d in arr.shape), device, where)


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
