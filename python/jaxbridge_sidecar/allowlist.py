"""Which Python callables a client may name: functions, never objects.

The rule (docs/protocol.md, "`call`", states it for users): a name from the
wire is `M.f`, where `M` is an allowed module (an allowed namespace or a
module inside one, every part public) reached by importing modules only, and
`f` is a public callable bound in `M` itself. No attribute of a class, a
function or any other object is ever looked up, so nothing reaches
`__globals__` or `__dict__`, a primitive's `def_impl` or numpy's
`ndarray.dump`. Inside allowed modules, names that change the process or
touch files are refused: every name that starts with `register`, `def_` or
`set_`, and the names in DENIED_ATTRS (files, pickles, configuration, print
options). Methods (`call_method`) follow the same naming rule.

Memory: before a call of a JAX function runs, `check_creation` traces it
abstractly (once per argument signature) and refuses one that would create
an array larger than the memory budget: the sizes that crash XLA (a huge
`iota`) never reach it."""

from __future__ import annotations

import importlib
import math
import types
from typing import Any, Callable, Iterable

import numpy as np

from . import limits
from .protocol import WireError

DEFAULT_NAMESPACES = (
    "jax.numpy",
    "jax.lax",
    "jax.nn",
    "jax.random",
    "jax.scipy",
    "jax.tree",
    "jax.tree_util",
)
# Single callables from the top-level `jax` module; the module as a whole is
# not allowed because it reaches config, profiler (writes files) and
# distributed (opens sockets).
DEFAULT_NAMES = (
    "jax.device_put",
    "jax.device_get",
    "jax.block_until_ready",
    "jax.devices",
    "jax.local_devices",
    "jax.device_count",
    "jax.default_backend",
)
# Names that touch files, take pickles, or change configuration or print options.
DENIED_ATTRS = frozenset(
    {
        "load", "save", "savez", "savez_compressed", "loadtxt", "savetxt", "genfromtxt", "fromfile", "tofile",
        "memmap", "fromregex", "DataSource", "dump", "config", "debug", "profiler", "distributed",
        "printoptions", "get_printoptions", "set_printoptions",
    }
)
# Name prefixes of functions that register or define something process-wide.
DENIED_PREFIXES = ("register", "def_", "set_")


class NotAllowed(Exception):
    pass


def documented_defaults() -> dict[str, list[str]]:
    """The default allow-list as docs/protocol.md tables it, row by row
    (`python -m jaxbridge_sidecar ops` prints it; the doc test compares).
    The namespaces are modules whose functions may be called, the callables
    single functions besides them; the denied attributes and prefixes are
    refused even inside those."""
    return {
        "namespaces": list(DEFAULT_NAMESPACES),
        "callables": list(DEFAULT_NAMES),
        "denied attributes": sorted(DENIED_ATTRS),
        "denied prefixes": list(DENIED_PREFIXES),
    }


def denied_name(name: str) -> str | None:
    """Why the public name `name` may not be called, or None."""
    if name in DENIED_ATTRS:
        return "it touches files, pickles, configuration or print options"
    if name.startswith(DENIED_PREFIXES):
        return "it registers, defines or sets something for the whole process"
    return None


def check_method_name(name: Any, where: str) -> str:
    """Public methods and __call__, minus the names denied everywhere."""
    if not isinstance(name, str) or not name.isidentifier() or (name.startswith("_") and name != "__call__"):
        raise NotAllowed(f"{where}: method {str(name)[:80]!r}: only public methods and __call__ can be called")
    why = denied_name(name)
    if why:
        raise NotAllowed(f"{where}: method {name!r} is denied everywhere: {why}")
    return name


class AllowList:
    def __init__(self, namespaces: Iterable[str] = DEFAULT_NAMESPACES, names: Iterable[str] = DEFAULT_NAMES, max_array_bytes: int | None = None):
        self.namespaces = tuple(dict.fromkeys(namespaces))
        self.names = frozenset(names)
        self.max_array_bytes = max_array_bytes if max_array_bytes is not None else limits.physical_memory_bytes()
        self._cache: dict[str, Callable[..., Any]] = {}
        # Calls check_creation passed, by signature (a bounded memo; dict operations are atomic under the GIL).
        self._checked: dict[Any, None] = {}

    def describe(self) -> str:
        return ", ".join(self.namespaces) + (" and " + ", ".join(sorted(self.names)) if self.names else "")

    def in_namespace(self, dotted: str) -> bool:
        """Whether `dotted` is an allowed namespace or lies inside one."""
        return any(dotted == ns or dotted.startswith(ns + ".") for ns in self.namespaces)

    def check_class(self, cls: type, where: str = "") -> None:
        """Methods may be called on objects whose class is defined inside the allow-list."""
        owner = getattr(cls, "__module__", "") or ""
        if not self.in_namespace(owner):
            raise NotAllowed(f"{where + ': ' if where else ''}{cls.__qualname__} is defined in {owner!r}, which is outside the allow-list ({self.describe()})")

    def check_module_name(self, dotted: Any) -> str:
        """A module a client may import: inside the allow-list, every part public (checked before importing)."""
        if not isinstance(dotted, str) or not dotted:
            raise NotAllowed(f"a module name must be a non-empty dotted string, got {str(dotted)[:80]!r}")
        parts = dotted.split(".")
        if any(not p.isidentifier() or p.startswith("_") for p in parts):
            raise NotAllowed(f"{dotted[:120]!r}: private or malformed names cannot be imported")
        if any(denied_name(p) for p in parts[1:]):
            raise NotAllowed(f"{dotted!r}: {denied_name(next(p for p in parts[1:] if denied_name(p)))}")
        if not self.in_namespace(dotted):
            raise NotAllowed(f"module {dotted!r} is not in the sidecar's allow-list ({self.describe()}); start the sidecar with `--allow {dotted}`")
        return dotted

    def resolve(self, dotted: Any) -> Callable[..., Any]:
        if not isinstance(dotted, str) or not dotted:
            raise NotAllowed(f"a function name must be a non-empty dotted string, got {str(dotted)[:80]!r}")
        hit = self._cache.get(dotted)
        if hit is not None:
            return hit
        obj = self._lookup(dotted)
        if isinstance(obj, types.ModuleType) or not callable(obj):
            raise NotAllowed(f"{dotted!r} is not a callable")
        self._cache[dotted] = obj
        return obj

    def list_attrs(self, dotted: Any) -> list[dict[str, str]]:
        """Names a client may reach one level below `dotted` ("" for the roots), for completion.
        Only modules have children: a class or function is a leaf here, as for `call`."""
        if not isinstance(dotted, str):
            raise NotAllowed(f"a path must be a dotted string, got {str(dotted)[:80]!r}")
        prefix = dotted + "." if dotted else ""
        entries: dict[str, str] = {}
        # Allowed names and namespaces below this path that are not attributes we can walk to.
        for full in (*self.namespaces, *self.names):
            if full.startswith(prefix) and full != dotted:
                child = full[len(prefix) :].split(".")[0]
                entries.setdefault(child, "module" if full in self.namespaces or "." in full[len(prefix) :] else "function")
        if dotted and self.in_namespace(dotted):
            obj = self._lookup(dotted)
            if not isinstance(obj, types.ModuleType):
                raise NotAllowed(f"{dotted!r} is not a module: only modules have names below them that `call` can reach")
            for name in dir(obj):
                if name.startswith("_") or denied_name(name):
                    continue
                try:
                    value = getattr(obj, name)
                except Exception:
                    continue
                if isinstance(value, types.ModuleType):
                    if self.in_namespace(value.__name__):
                        entries[name] = "module"
                elif isinstance(value, type):
                    entries[name] = "class"
                elif callable(value):
                    entries[name] = "function"
                else:
                    entries[name] = "value"
        if dotted and not entries and not (dotted in self.names or self.in_namespace(dotted)):
            raise NotAllowed(f"{dotted!r} is not in the sidecar's allow-list ({self.describe()})")
        return [{"name": k, "kind": v} for k, v in sorted(entries.items())]

    def _lookup(self, dotted: str) -> Any:
        parts = dotted.split(".")
        if any(not p.isidentifier() or p.startswith("_") for p in parts):
            raise NotAllowed(f"{dotted[:120]!r}: private or malformed names cannot be called")
        for p in parts[1:]:
            why = denied_name(p)
            if why:
                raise NotAllowed(f"{dotted!r} cannot be called: {why}")
        if dotted not in self.names and not self.in_namespace(dotted):
            raise NotAllowed(f"{dotted!r} is not in the sidecar's allow-list ({self.describe()}); add a namespace with `serve --allow`")
        if dotted in self.names:
            module, attr = dotted.rsplit(".", 1)
            return getattr(importlib.import_module(module), attr)
        # The longest prefix that is a module; at most one attribute after it.
        for cut in range(len(parts), 0, -1):
            modname = ".".join(parts[:cut])
            if not self.in_namespace(modname):
                break
            try:
                obj = importlib.import_module(modname)
            except ImportError:
                continue
            rest = parts[cut:]
            if not rest:
                return obj
            if len(rest) > 1:
                raise NotAllowed(f"{dotted!r}: {modname}.{rest[0]} is not a module, and `call` looks up no attribute of anything but a module")
            try:
                value = getattr(obj, rest[0])
            except AttributeError:
                raise NotAllowed(f"{dotted!r}: {modname} has no attribute {rest[0]!r}") from None
            if isinstance(value, types.ModuleType) and not self.in_namespace(value.__name__):
                raise NotAllowed(f"{dotted!r} reaches module {value.__name__!r}, which is outside the allow-list")
            return value
        raise NotAllowed(f"{dotted!r}: no allowed module could be imported for it")

    # --- the memory budget ---------------------------------------------------------
    def check_creation(self, dotted: str, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> None:
        """Refuse a call of a JAX function that would create an array over the
        budget, before it runs: the call is traced abstractly (jax.make_jaxpr)
        with its non-array arguments, scalar arrays and small integer arrays
        as constants (they may set sizes), and every array in the trace is
        measured. Verdicts are kept per signature; a call JAX cannot trace
        abstractly (its output shape depends on values, like `nonzero`) is
        bounded by its inputs and runs unchecked. Functions of user-allowed
        packages are not traced (that would run their Python twice)."""
        if not dotted.startswith("jax."):
            return
        try:
            key = (dotted, _signature(args), _signature(kwargs))
            checked = key in self._checked
        except (TypeError, _Unkeyable):
            key, checked = None, False
        if checked:
            return
        biggest = _largest_array(fn, args, kwargs)
        if biggest is not None and biggest[0] > self.max_array_bytes:
            nbytes, what = biggest
            raise WireError("LimitExceeded", limits.exceeded(f"{dotted} would create {what}, which", limits.fmt_bytes(nbytes), "max_array_bytes", limits.fmt_bytes(self.max_array_bytes)))
        if key is not None:
            if len(self._checked) >= 4096:
                self._checked.clear()  # a bounded memo: start over rather than keep order
            self._checked[key] = None


class _Unkeyable(Exception):
    pass


# Integer arrays this small may be shapes; they are concrete when tracing.
_STATIC_INT_ARRAY = 64


_ARRAY_TYPES: set[type] = set()


def _is_array(v: Any) -> bool:
    t = type(v)
    if t in _ARRAY_TYPES:
        return True
    if hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, type):
        _ARRAY_TYPES.add(t)
        return True
    return False


def _static(v: Any) -> bool:
    """Whether an array argument is a constant of the abstract trace (it may set a size)."""
    shape = v.shape
    if not shape:
        return True
    kind = getattr(v.dtype, "kind", None)  # PRNG keys and other extended dtypes never set a size
    return kind is not None and kind in "iub" and math.prod(shape) <= _STATIC_INT_ARRAY


_PLAIN = (bool, int, float, complex, str, bytes, type(None))


def _signature(v: Any) -> Any:
    """What decides the arrays a call creates: array types, and the values of everything that may set a size. Cheap: it runs on every call."""
    t = type(v)
    if t in _PLAIN:
        return (t, v)
    if t is list or t is tuple:
        return (t, *map(_signature, v))
    if t is dict:
        return (t, *((k, _signature(x)) for k, x in sorted(v.items())))
    if _is_array(v):
        if _static(v):
            return ("c", v.dtype, tuple(v.shape), np.asarray(v).tobytes())
        return ("a", v.dtype, tuple(v.shape), getattr(v, "weak_type", False))
    raise _Unkeyable()


def _largest_array(fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> tuple[int, str] | None:
    """(bytes, description) of the largest array in the abstract trace of the call, or None if JAX cannot trace it."""
    import jax

    leaves, treedef = jax.tree.flatten((args, kwargs))
    traced = [i for i, v in enumerate(leaves) if _is_array(v) and not _static(v)]

    def call(*arrays: Any) -> Any:
        filled = list(leaves)
        for i, a in zip(traced, arrays):
            filled[i] = a
        a, k = jax.tree.unflatten(treedef, filled)
        return fn(*a, **k)

    try:
        closed = jax.make_jaxpr(call)(*[jax.ShapeDtypeStruct(leaves[i].shape, leaves[i].dtype) for i in traced])
    except Exception:  # noqa: BLE001 - untraceable: bounded by its inputs, checked by nothing here
        return None
    best: tuple[int, str] | None = None
    stack = [closed.jaxpr]
    while stack:
        jaxpr = stack.pop()
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                aval = getattr(var, "aval", None)
                shape, dtype = getattr(aval, "shape", None), getattr(aval, "dtype", None)
                if shape is None or dtype is None:
                    continue
                try:
                    n = np.dtype(dtype).itemsize
                except TypeError:
                    n = 4  # extended dtypes (PRNG keys): a few words per element
                for d in shape:
                    n *= int(d)
                if best is None or n > best[0]:
                    best = (n, f"{np.dtype(dtype).name if _plain(dtype) else dtype}[{', '.join(map(str, shape))}] (by {eqn.primitive.name})")
            for p in eqn.params.values():
                for sub in p if isinstance(p, (list, tuple)) else (p,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        stack.append(inner)
    return best


def _plain(dtype: Any) -> bool:
    try:
        np.dtype(dtype)
        return True
    except TypeError:
        return False
