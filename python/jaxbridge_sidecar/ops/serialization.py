"""Equinox serialisation of values the sidecar holds: `fingerprint` (lerax's
structural hash), `serialise_leaves` and `deserialise_leaves` (the bytes
`eqx.tree_serialise_leaves` writes and reads)."""

from __future__ import annotations

import io
from typing import Any

import equinox as eqx
import numpy as np

from .. import remote
from ..protocol import WireError
from .host import Host, Op


def fingerprint(host: Host, env: dict[str, Any]) -> bytes:
    return remote.fingerprint(host.materialize(env.get("value")))


def serialise_leaves(host: Host, env: dict[str, Any]) -> Any:
    """The bytes equinox's tree_serialise_leaves writes for a value, and lerax's fingerprint of it."""
    tree = host.materialize(env.get("value"))
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    return {"fingerprint": remote.fingerprint(tree), "leaves": buf.getvalue()}


def deserialise_leaves(host: Host, env: dict[str, Any]) -> Any:
    """Load equinox leaf bytes into the skeleton `like` (equinox checks each leaf's shape and dtype)."""
    like = host.materialize(env.get("like"))
    data = env.get("leaves")
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1:
        data = data.tobytes()
    if not isinstance(data, bytes):
        raise WireError("ProtocolError", "deserialise_leaves needs `leaves` as a uint8 array (or bytes)")
    buf = io.BytesIO(data)
    tree = eqx.tree_deserialise_leaves(buf, like)
    if buf.tell() != len(data):
        raise ValueError(f"{len(data) - buf.tell()} trailing bytes after the last leaf: the file holds more than this structure")
    return host.export(tree, bool(env.get("fetch")))


OPS: dict[str, Op] = {"fingerprint": fingerprint, "serialise_leaves": serialise_leaves, "deserialise_leaves": deserialise_leaves}
