"""The client's side of callback events: `ack` (see events.py at the package
top for batching and backpressure)."""

from __future__ import annotations

from typing import Any

from .host import NO_REPLY, Host, Op


def ack(host: Host, env: dict[str, Any]) -> Any:
    """The client consumed callback batches up to `batch` of call `call` (no reply)."""
    call, seq = env.get("call"), env.get("batch")
    run = host.runs.find(call)
    if run is not None and isinstance(seq, int):
        run.ack(seq)
    return NO_REPLY


OPS: dict[str, Op] = {"ack": ack}
