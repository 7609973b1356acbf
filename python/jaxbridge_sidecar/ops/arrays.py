"""Arrays in and out of the handle table: `put`, `get`, `free`, `block`
(wait until arrays are computed), and `device_put` (placement with a sharding)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..protocol import HandleRef, WireError, walk
from .host import Host, Op


def put(host: Host, env: dict[str, Any]) -> Any:
    device = host.device(env.get("device"))

    def place(a: Any) -> jax.Array:
        # A handle put again without a device names the same array.
        return a if device is None and isinstance(a, jax.Array) else jax.device_put(a, device)

    return host.handles.place(env.get("value"), place)


def get(host: Host, env: dict[str, Any]) -> Any:
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
    """Place arrays with a sharding: `mesh` {shape, axes} over the first devices, `spec` a PartitionSpec."""
    mesh, spec = env.get("mesh"), env.get("spec")
    if not isinstance(mesh, dict) or not isinstance(mesh.get("shape"), list) or not isinstance(mesh.get("axes"), list):
        raise WireError("ProtocolError", "device_put needs `mesh` as {shape: [ints], axes: [names]}")
    shape, axes = mesh["shape"], mesh["axes"]
    if len(shape) != len(axes) or not all(isinstance(d, int) and d > 0 for d in shape) or not all(isinstance(a, str) for a in axes):
        raise WireError("ArgumentError", f"mesh shape {shape!r} and axes {axes!r} must be positive ints and names of equal length")
    n = int(np.prod(shape))
    devices = jax.devices()
    if n > len(devices):
        raise WireError("ArgumentError", f"a mesh of {n} devices needs more than this sidecar's {len(devices)} devices")
    if not isinstance(spec, list) or not all(s is None or isinstance(s, str) or (isinstance(s, list) and all(isinstance(x, str) for x in s)) for s in spec):
        raise WireError("ProtocolError", "device_put needs `spec` as a list of axis names, null, or lists of axis names")
    sharding = NamedSharding(Mesh(np.array(devices[:n]).reshape(shape), tuple(axes)), PartitionSpec(*[tuple(s) if isinstance(s, list) else s for s in spec]))
    return host.handles.place(env.get("value"), lambda a: jax.device_put(a, sharding))


OPS: dict[str, Op] = {"put": put, "get": get, "free": free, "block": block, "device_put": device_put}
