"""The session's own ops: `hello` (the handshake, and the resumption of a
session after a reconnect), `ping`, `stats`, `memory` and `close`."""

from __future__ import annotations

import os
import sys
from typing import Any

import jax

from .. import protocol
from ..protocol import WireError
from ..sample import handshake_sample, same
from .host import Host, Op


def hello(host: Host, env: dict[str, Any]) -> dict[str, Any]:
    theirs = env.get("protocol")
    if theirs != protocol.PROTOCOL_VERSION:
        raise WireError("ProtocolError", f"client speaks protocol {theirs!r}, this sidecar speaks {protocol.PROTOCOL_VERSION}")
    sample = env.get("sample")
    if sample is not None and not same(sample, handshake_sample()):
        raise WireError("ProtocolError", "the handshake sample did not decode to the expected values: the two sides disagree on the wire format")
    devices = jax.devices()
    return {
        "protocol": protocol.PROTOCOL_VERSION,
        "server": "jaxbridge-sidecar 0.1.0",
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else _jaxlib_version(),
        "backend": jax.default_backend(),
        "devices": [{"id": d.id, "platform": d.platform, "kind": d.device_kind, "str": str(d), "process_index": d.process_index} for d in devices],
        "x64": bool(jax.config.jax_enable_x64),
        # This process's place in a multi-process job ({index 0, count 1} alone).
        "process": {"index": jax.process_index(), "count": jax.process_count()},
        "instance": host.instance,
        "pid": os.getpid(),
        "max_message_bytes": host.max_message_bytes,
        "max_frame_bytes": protocol.MAX_FRAME_BYTES,
        "limits": host.limits.describe(),
        "lease_seconds": host.lease_seconds,
        "restarted": host.restarted,
        "resumed": host.resumed(env.get("resume")),
        "sample": sample,
    }


def ping(host: Host, env: dict[str, Any]) -> str:
    return "pong"


def stats(host: Host, env: dict[str, Any]) -> dict[str, int]:
    """This session's arrays, objects and their bytes; the sidecar's traffic, sessions and memory."""
    return {"handles": len(host.handles), "objects": host.handles.object_count, "bytes": host.handles.nbytes(), **host.counters()}


def memory(host: Host, env: dict[str, Any]) -> dict[str, Any]:
    """The handle table's own accounting (handles.HandleTable.memory)."""
    return host.handles.memory()


def close(host: Host, env: dict[str, Any]) -> dict[str, int]:
    """End this session: everything it holds is freed once this reply is sent."""
    held = {"handles": len(host.handles), "objects": host.handles.object_count}
    host.end_session("closed by its client")
    return held


def _jaxlib_version() -> str:
    try:
        import jaxlib

        return jaxlib.__version__
    except Exception:
        return "unknown"


OPS: dict[str, Op] = {"hello": hello, "ping": ping, "stats": stats, "memory": memory, "close": close}
