"""Shardings on the wire (docs/protocol.md, "Shardings"), both ways.

A mesh travels as `{axis_names, axis_sizes, axis_types, device_ids}` (the
device ids flat, in C order), a PartitionSpec as a list with one entry per
array axis (null, or the list of mesh axes it is split over), a
NamedSharding as `{mesh, spec}`. A device array's layout is its sharding
plus its addressable shards, each `[device_id, [[start, stop], ...],
replica_id]`. Device ids are JAX's own, which are global in a
multi-process job and not dense (process 1's first CPU device is 2048),
so a description made by one process names the same devices in every
other; a position in `jax.devices()` would not."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

from .protocol import WireError

# Auto is what a Mesh gets by default, and what shard_map needs of its inputs'
# meshes: with Explicit axes (jax.make_mesh's default) an input whose
# type-level sharding differs from in_specs is refused.
AXIS_TYPES = ("Auto", "Explicit")

Error = Callable[[str], Exception]


def _argument_error(message: str) -> Exception:
    return WireError("ArgumentError", message)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@functools.cache
def _devices_by_id() -> dict[int, Any]:
    # The backend's devices never change once it started; in a multi-process
    # job jax.devices() lists every process's devices.
    return {d.id: d for d in jax.devices()}


def mesh_from_wire(obj: Any, where: str, error: Error = _argument_error) -> Mesh:
    if not isinstance(obj, dict) or set(obj) != {"axis_names", "axis_sizes", "axis_types", "device_ids"}:
        raise error(f"{where}: a mesh is {{axis_names, axis_sizes, axis_types, device_ids}}, got {obj!r}")
    names, sizes, types, ids = obj["axis_names"], obj["axis_sizes"], obj["axis_types"], obj["device_ids"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise error(f"{where}: mesh axis_names must be distinct non-empty strings, got {names!r}")
    if not isinstance(sizes, list) or len(sizes) != len(names) or not all(_is_int(s) and s > 0 for s in sizes):
        raise error(f"{where}: mesh axis_sizes must be one positive integer per axis name ({len(names)}), got {sizes!r}")
    if not isinstance(types, list) or len(types) != len(names) or not all(t in AXIS_TYPES for t in types):
        raise error(f"{where}: mesh axis_types must be one of {list(AXIS_TYPES)} per axis name, got {types!r}")
    n = int(np.prod(sizes))
    if not isinstance(ids, list) or len(ids) != n or not all(_is_int(i) for i in ids) or len(set(ids)) != n:
        raise error(f"{where}: mesh device_ids must be {n} distinct device ids (the product of axis_sizes {sizes}), got {ids!r}")
    by_id = _devices_by_id()
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise error(f"{where}: mesh names device ids {missing}, which this job does not have (its devices: {sorted(by_id)})")
    devices = np.array([by_id[i] for i in ids], dtype=object).reshape(sizes)
    return Mesh(devices, tuple(names), axis_types=tuple(getattr(AxisType, t) for t in types))


def spec_from_wire(obj: Any, mesh: Mesh, where: str, error: Error = _argument_error) -> PartitionSpec:
    if not isinstance(obj, list):
        raise error(f"{where}: a PartitionSpec is a list (per array axis: null, or a list of mesh axis names), got {obj!r}")
    entries: list[Any] = []
    used: set[str] = set()
    for k, e in enumerate(obj):
        if e is None:
            entries.append(None)
            continue
        if not isinstance(e, list) or not e or not all(isinstance(a, str) for a in e):
            raise error(f"{where}[{k}]: a PartitionSpec entry is null or a non-empty list of mesh axis names, got {e!r}")
        for a in e:
            if a not in mesh.axis_names:
                raise error(f"{where}[{k}]: {a!r} is not an axis of the mesh {list(mesh.axis_names)}")
            if a in used:
                raise error(f"{where}[{k}]: mesh axis {a!r} is used twice in one PartitionSpec")
            used.add(a)
        entries.append(e[0] if len(e) == 1 else tuple(e))
    return PartitionSpec(*entries)


def sharding_from_wire(obj: Any, where: str, error: Error = _argument_error) -> NamedSharding:
    if not isinstance(obj, dict) or set(obj) != {"mesh", "spec"}:
        raise error(f"{where}: a sharding is {{mesh, spec}}, got {obj!r}")
    mesh = mesh_from_wire(obj["mesh"], f"{where}.mesh", error)
    return NamedSharding(mesh, spec_from_wire(obj["spec"], mesh, f"{where}.spec", error))


def mesh_to_wire(mesh: Mesh) -> dict[str, Any]:
    return {
        "axis_names": list(mesh.axis_names),
        "axis_sizes": [int(s) for s in mesh.devices.shape],
        "axis_types": [t.name for t in mesh.axis_types],
        "device_ids": [int(d.id) for d in mesh.devices.flat],
    }


def spec_to_wire(spec: PartitionSpec) -> list[Any]:
    out: list[Any] = []
    for e in spec:
        if e is None:
            out.append(None)
        elif isinstance(e, str):
            out.append([e])
        elif isinstance(e, tuple) and all(isinstance(a, str) for a in e):
            out.append(list(e) or None)
        else:
            raise WireError("ArgumentError", f"PartitionSpec entry {e!r} has no wire form (only axis names and None travel)")
    return out


def sharding_to_wire(s: NamedSharding) -> dict[str, Any]:
    return {"mesh": mesh_to_wire(s.mesh), "spec": spec_to_wire(s.spec)}


def layout(arr: jax.Array) -> dict[str, Any] | None:
    """How an array lies on its devices, for its handle: None when it is on
    one device (the common case costs one isinstance check), else its
    NamedSharding (`mesh` and `spec`, null for another kind of sharding)
    and its addressable shards, this process's only."""
    s = arr.sharding
    if isinstance(s, SingleDeviceSharding):
        return None
    named = isinstance(s, NamedSharding)
    shape = arr.shape
    return {
        "mesh": mesh_to_wire(s.mesh) if named else None,
        "spec": spec_to_wire(s.spec) if named else None,
        "shards": [[int(sh.device.id), [list(sl.indices(n)[:2]) for sl, n in zip(sh.index, shape)], int(sh.replica_id)] for sh in arr.addressable_shards],
    }
