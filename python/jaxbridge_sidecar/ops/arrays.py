"""Arrays in and out of the handle table: `put`, `get`, `free`, `block`
(wait until arrays are computed), and `device_put` (placement with a sharding)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding

from ..protocol import HandleRef, WireError, walk
from ..sharding import sharding_from_wire
from .host import Host, Op


def put(host: Host, env: dict[str, Any]) -> Any:
    device = host.device(env.get("device"))

    def place(a: Any) -> jax.Array:
        # A handle put again without a device names the same array.
        return a if device is None and isinstance(a, jax.Array) else jax.device_put(a, device)

    return host.handles.place(env.get("value"), place)


def get(host: Host, env: dict[str, Any]) -> Any:
    if env.get("shards"):
        # Shard by shard: this process's pieces, in addressable_shards order. The
        # only way to read an array that spans other processes without a collective.
        return walk(env.get("value"), lambda v, _p: [np.asarray(s.data) for s in host.handles.get(v.id).addressable_shards] if isinstance(v, HandleRef) else v)
    return walk(env.get("value"), lambda v, _p: np.asarray(host.handles.get(v.id)) if isinstance(v, HandleRef) else v)


def free(host: Host, env: dict[str, Any]) -> Any:
    ids = env.get("handles")
    if not isinstance(ids, list):
        raise WireError("ProtocolError", "free needs a list of handle ids in `handles`")
    freed, unknown = host.handles.free(ids)
    return {"freed": freed, "unknown": unknown}


def block(host: Host, env: dict[str, Any]) -> None:
    """Wait until the named arrays are computed (their requests may have replied on dispatch)."""
    ids = env.get("handles")
    if not isinstance(ids, list):
        raise WireError("ProtocolError", "block needs a list of handle ids in `handles`")
    jax.block_until_ready([host.handles.get(h) for h in ids])
    return None


def device_put(host: Host, env: dict[str, Any]) -> Any:
    """Place arrays with a NamedSharding: `sharding` in its wire form (see
    sharding.py), or the older `mesh` {shape, axes} over the first devices
    with `spec`, a PartitionSpec whose entries may be bare axis names."""
    if env.get("sharding") is not None:
        sharding = sharding_from_wire(env["sharding"], "device_put `sharding`")
    else:
        sharding = _legacy_sharding(env.get("mesh"), env.get("spec"))
    global_shape = env.get("global_shape")
    if global_shape is None:
        return host.handles.place(env.get("value"), lambda a: jax.device_put(a, sharding))
    # A process of a multi-process job sends only its own slab of the global
    # array (the block its devices hold); JAX assembles the global array.
    if not isinstance(global_shape, list) or not all(isinstance(d, int) and d >= 0 for d in global_shape):
        raise WireError("ProtocolError", f"device_put `global_shape` must be a list of non-negative ints, got {global_shape!r}")
    shape = tuple(global_shape)
    return host.handles.place(env.get("value"), lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a), shape))


def _legacy_sharding(mesh: Any, spec: Any) -> NamedSharding:
    if not isinstance(mesh, dict) or not isinstance(mesh.get("shape"), list) or not isinstance(mesh.get("axes"), list):
        raise WireError("ProtocolError", "device_put needs `sharding` ({mesh, spec}), or `mesh` as {shape: [ints], axes: [names]} with `spec`")
    shape, axes = mesh["shape"], mesh["axes"]
    if len(shape) != len(axes) or not all(isinstance(d, int) and d > 0 for d in shape) or not all(isinstance(a, str) for a in axes):
        raise WireError("ArgumentError", f"mesh shape {shape!r} and axes {axes!r} must be positive ints and names of equal length")
    n = int(np.prod(shape))
    devices = jax.devices()
    if n > len(devices):
        raise WireError("ArgumentError", f"a mesh of {n} devices needs more than this sidecar's {len(devices)} devices")
    if not isinstance(spec, list) or not all(s is None or isinstance(s, str) or (isinstance(s, list) and all(isinstance(x, str) for x in s)) for s in spec):
        raise WireError("ProtocolError", "device_put needs `spec` as a list of axis names, null, or lists of axis names")
    wire_mesh = {"axis_names": axes, "axis_sizes": shape, "axis_types": ["Auto"] * len(axes), "device_ids": [d.id for d in devices[:n]]}
    wire_spec = [[s] if isinstance(s, str) else s for s in spec]
    return sharding_from_wire({"mesh": wire_mesh, "spec": wire_spec}, "device_put")


OPS: dict[str, Op] = {"put": put, "get": get, "free": free, "block": block, "device_put": device_put}
