"""Python values as TypeScript pytrees, and back.

A value leaving the sidecar is split the TypeScript way: arrays become
handles, lists/tuples/dicts become containers, an equinox Module becomes a
module node (structure key, class, children in field order), and every other
leaf becomes an opaque PyRef held in the object table. Top-level plain
scalars (bool, int, float, str, None) travel as themselves.

Coming back, a module node is rebuilt by unflattening the structure it left
with (kept here by key) over the leaves of its children, so static fields,
tuples and custom containers inside it come back exactly, and arrays are
never copied."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable

import equinox as eqx
import jax
import numpy as np

from .handles import HandleTable
from .protocol import HandleOut, HandleRef, ModuleIn, ModuleOut, PyRefIn, WireError


class StructureTable:
    """Module tree structures by key: sha256 of repr(jax.tree.structure), as lerax fingerprints them."""

    def __init__(self) -> None:
        self._defs: dict[str, Any] = {}

    def key_for(self, module: Any) -> tuple[str, Any]:
        treedef = jax.tree.structure(module)
        digest = hashlib.sha256(repr(treedef).encode()).hexdigest()
        key, n = digest, 0
        while key in self._defs and self._defs[key] != treedef:
            n += 1
            key = f"{digest}#{n}"
        self._defs.setdefault(key, treedef)
        return key, treedef

    def get(self, key: str) -> Any:
        try:
            return self._defs[key]
        except KeyError:
            raise WireError("UnknownHandle", f"module structure {key[:16]}... is unknown to this sidecar (it came from another one)") from None


def fingerprint(tree: Any) -> bytes:
    """lerax's structural fingerprint: sha256 of repr(jax.tree.structure(tree))."""
    return hashlib.sha256(repr(jax.tree.structure(tree)).encode()).digest()


def _is_module(v: Any) -> bool:
    return isinstance(v, eqx.Module)


def export(table: HandleTable, structures: StructureTable, value: Any, fetch: bool) -> Any:
    """A Python result as the wire carries it (see the module docstring)."""

    def go(v: Any, top: bool) -> Any:
        if isinstance(v, jax.Array):
            return np.asarray(v) if fetch else table.add(v)
        if isinstance(v, (np.ndarray, np.generic)):
            return np.asarray(v) if fetch else table.add(jax.device_put(v))
        if isinstance(v, HandleOut):
            return v
        if v is None:
            return None
        if top and isinstance(v, (bool, int, float, str)) and not (isinstance(v, int) and not -(2**63) <= v < 2**64):
            return v
        if isinstance(v, (list, tuple)):
            return [go(x, top) for x in v]
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {k: go(x, top) for k, x in v.items()}
        if _is_module(v):
            key, _ = structures.key_for(v)
            t = type(v)
            children = {f.name: go(getattr(v, f.name), False) for f in dataclasses.fields(v) if not f.metadata.get("static", False) and hasattr(v, f.name)}
            return ModuleOut(key, f"{t.__module__}.{t.__qualname__}", children)
        return table.add_object(v)

    return go(value, True)


def _up_to(structure: Any, value: Any) -> list[Any]:
    """The subtrees of `value` at the leaves of `structure` (None where a leaf was is kept). Lists
    and tuples match each other: the wire carries tuples as lists."""
    data = structure.node_data()
    if data is not None and data[0] in (list, tuple) and isinstance(value, (list, tuple)):
        subs = structure.children()
        if len(subs) != len(value):
            raise ValueError(f"{structure} has {len(subs)} children, the value {len(value)}")
        return [x for sub, v in zip(subs, value) for x in _up_to(sub, v)]
    return structure.flatten_up_to(value)


def rebuild_module(treedef: Any, children: list[Any], error: Callable[[str], Exception] = ValueError) -> Any:
    """A module from the values of its fields, in the structure it left the
    sidecar with. Children are flattened by default, as when the structure
    was taken, so children exported as PyRefs (custom nodes) expand here
    exactly as they did there. None may stand where the structure has a
    leaf (equinox's gradients of a module have None there)."""
    leaves = jax.tree.leaves(children)
    if len(leaves) != treedef.num_leaves:
        # A field may hold None where the structure has a leaf, as equinox's gradients do (eqx.filter_grad
        # gives None for an activation function): read the children up to the structure's leaves.
        try:
            leaves = [x for sub, child in zip(treedef.children(), children, strict=True) for x in _up_to(sub, child)]
        except (ValueError, TypeError):
            raise error(f"module {treedef} expects {treedef.num_leaves} leaves, the client sent {len(leaves)}: its structure was changed in TypeScript") from None
    return jax.tree.unflatten(treedef, leaves)


def materialize(table: HandleTable, structures: StructureTable, value: Any) -> Any:
    """Handles, PyRefs and module nodes in a request become the objects they name."""

    def go(v: Any) -> Any:
        if isinstance(v, HandleRef):
            return table.get(v.id)
        if isinstance(v, PyRefIn):
            return table.get_object(v.id)
        if isinstance(v, ModuleIn):
            return rebuild_module(structures.get(v.key), [go(x) for x in v.fields.values()])
        if isinstance(v, dict):
            return {k: go(x) for k, x in v.items()}
        if isinstance(v, list):
            return [go(x) for x in v]
        return v

    return go(value)
