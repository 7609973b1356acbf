"""The handle table: ids the client holds for arrays that stay on the device."""

from __future__ import annotations

import itertools
from typing import Any, Iterable

import jax

from .protocol import HandleOut, WireError, dtype_name


class HandleTable:
    def __init__(self) -> None:
        self._arrays: dict[int, jax.Array] = {}
        self._ids = itertools.count(1)

    def add(self, arr: jax.Array) -> HandleOut:
        hid = next(self._ids)
        self._arrays[hid] = arr
        return describe(hid, arr)

    def get(self, hid: int) -> jax.Array:
        try:
            return self._arrays[hid]
        except KeyError:
            raise WireError("UnknownHandle", f"handle {hid} is not in the sidecar's table (freed, or from another sidecar)") from None

    def free(self, ids: Iterable[Any]) -> tuple[int, list[Any]]:
        freed, unknown = 0, []
        for hid in ids:
            arr = self._arrays.pop(hid, None) if isinstance(hid, int) else None
            if arr is None:
                unknown.append(hid)
            else:
                freed += 1
                # Release device memory now rather than when the GC finds it.
                if not any(a is arr for a in self._arrays.values()):
                    try:
                        arr.delete()
                    except Exception:
                        pass
        return freed, unknown

    def __len__(self) -> int:
        return len(self._arrays)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._arrays.values())


def describe(hid: int, arr: jax.Array) -> HandleOut:
    devices = arr.devices()
    device = str(next(iter(devices))) if len(devices) == 1 else f"sharded({len(devices)})"
    return HandleOut(hid, dtype_name(arr.dtype), tuple(int(d) for d in arr.shape), device)
