"""Calling a remote Python object from a traced program: the `pycall` primitive.

A TypeScript function being traced can call a method of an equinox Module or
of another object the sidecar handed out (a PyRef). The program cannot name
Python objects directly, so the equation carries a *target template*: the
module's wire form with every array leaf replaced by the next input of the
equation. Templates are JSON (the program is canonical JSON):

    node := null | "array" | {"ref": id} | {"list": [node, ...]}
          | {"dict": [[key, node], ...]} | {"module": key, "fields": [[name, node], ...]}

The target itself is a module node or a ref. PyRefs and module structures
are resolved once, when the program is decoded, and held by the decoded
program: a cached program keeps working after the client released them.

Outputs are described the same way (`"array"`, null, list, tuple, dict of
them), so the tracer knows their structure before the program runs; the
`pycall_shapes` op answers that with `jax.eval_shape`, and the run checks
that the method still returns that structure.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from ..allowlist import AllowList
from ..handles import HandleTable
from ..protocol import WireError
from ..remote import StructureTable, rebuild_module

Builder = Callable[[list[Any]], Any]


class Objects(Protocol):
    """What a pycall template may name: the objects and module structures the
    client holds, and the allow-list their classes must pass."""

    @property
    def handles(self) -> HandleTable: ...

    @property
    def structures(self) -> StructureTable: ...

    @property
    def allow(self) -> AllowList: ...


def _error(message: str) -> WireError:
    return WireError("ProgramError", message)


class Target:
    """A decoded target template and its argument templates: `build(arrays)`
    makes the object and the arguments; `cls` is the object's class. Array
    slots are numbered through the target first, then the arguments."""

    def __init__(self, objects: Objects, node: Any, args: Any, where: str):
        self._slots = 0
        if isinstance(node, dict) and ("module" in node or set(node) == {"ref"}):
            target = self._parse(objects, node, where)
        else:
            raise _error(f"{where}: a pycall target is a module node or a ref, got {node!r}")
        if not isinstance(args, list):
            raise _error(f"{where}: pycall args are a list of template nodes, got {args!r}")
        arg_builders = [self._parse(objects, a, f"args[{i}]") for i, a in enumerate(args)]
        self._build = lambda arrays: (target(arrays), [b(arrays) for b in arg_builders])
        if "module" in node:
            self.cls: type = objects.structures.get(node["module"]).node_data()[0]
        else:
            self.cls = type(objects.handles.get_object(node["ref"]))
        objects.allow.check_class(self.cls, where)

    @property
    def arrays(self) -> int:
        """How many arrays the templates take (their "array" slots, in order)."""
        return self._slots

    def build(self, arrays: list[Any]) -> tuple[Any, list[Any]]:
        """The object and the arguments, from exactly `self.arrays` arrays (its callers check the count)."""
        return self._build(arrays)

    def _parse(self, objects: Objects, node: Any, where: str) -> Builder:
        if node is None:
            return lambda arrays: None
        if node == "array":
            k = self._slots
            self._slots += 1
            return lambda arrays: arrays[k]
        if not isinstance(node, dict) or len(node) not in (1, 2):
            raise _error(f"{where}: a template node is null, \"array\", or a ref, list, dict or module node; got {node!r}")
        if set(node) == {"ref"}:
            hid = node["ref"]
            if not isinstance(hid, int) or isinstance(hid, bool):
                raise _error(f"{where}: a ref is an integer id, got {hid!r}")
            obj = objects.handles.get_object(hid)
            return lambda arrays: obj
        if set(node) == {"list"} and isinstance(node["list"], list):
            items = [self._parse(objects, x, f"{where}[{i}]") for i, x in enumerate(node["list"])]
            return lambda arrays: [b(arrays) for b in items]
        if set(node) == {"dict"}:
            pairs = self._pairs(objects, node["dict"], where, "dict")
            return lambda arrays: {k: b(arrays) for k, b in pairs}
        if set(node) == {"module", "fields"}:
            key = node["module"]
            if not isinstance(key, str):
                raise _error(f"{where}: a module node's key is a string, got {key!r}")
            treedef = objects.structures.get(key)
            fields = self._pairs(objects, node["fields"], where, "fields")

            error = lambda message: _error(f"{where}: {message}")  # noqa: E731
            return lambda arrays: rebuild_module(treedef, [b(arrays) for _, b in fields], error)
        raise _error(f"{where}: unknown template node {sorted(node)}")

    def _pairs(self, objects: Objects, pairs: Any, where: str, what: str) -> list[tuple[str, Builder]]:
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
            raise _error(f"{where}: {what} is a list of [name, node] pairs")
        return [(k, self._parse(objects, v, f"{where}.{k}" if what == "fields" else f"{where}[{k!r}]")) for k, v in pairs]


# --- outputs --------------------------------------------------------------------------


def flatten_output(value: Any, where: str = "result") -> tuple[Any, list[Any]]:
    """The output's description and its arrays, depth first (dict keys sorted, as JAX orders them)."""
    arrays: list[Any] = []

    def go(v: Any, path: str) -> Any:
        if isinstance(v, (jax.Array, np.ndarray, np.generic, bool, int, float, complex)):
            arrays.append(jnp.asarray(v))
            return "array"
        if v is None:
            return None
        if isinstance(v, tuple) and not hasattr(v, "_fields"):
            return {"tuple": [go(x, f"{path}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, list):
            return {"list": [go(x, f"{path}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {"dict": [[k, go(v[k], f"{path}[{k!r}]")] for k in sorted(v)]}
        t = type(v)
        raise _error(f"{path} is an instance of {t.__module__}.{t.__qualname__}: a method called from a traced function returns arrays, or tuples, lists and dicts of them")

    return go(value, where), arrays


def check_output_node(node: Any, where: str) -> Any:
    """Validate a declared output description (a program parameter)."""
    if node is None or node == "array":
        return node
    if isinstance(node, dict) and len(node) == 1:
        (kind, items), = node.items()
        if kind in ("list", "tuple") and isinstance(items, list):
            return {kind: [check_output_node(x, f"{where}[{i}]") for i, x in enumerate(items)]}
        if kind == "dict" and isinstance(items, list) and all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in items):
            return {"dict": [[k, check_output_node(v, f"{where}[{k!r}]")] for k, v in items]}
    raise _error(f"{where}: an output node is \"array\", null, or a list, tuple or dict node; got {node!r}")


def call(target: Target, method: str, arrays: list[Any], where: str) -> tuple[Any, list[Any]]:
    obj, args = target.build(arrays)
    fn = getattr(obj, method, None)
    if not callable(fn):
        raise _error(f"{where}: {type(obj).__qualname__}.{method} is not a method")
    return flatten_output(fn(*args), f"{where}: {type(obj).__qualname__}.{method}(...)")
