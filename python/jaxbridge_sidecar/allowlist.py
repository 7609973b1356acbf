"""Which Python callables a client may name. A name is data from the wire, so it
resolves only inside allowed namespaces and never to I/O or to private names."""

from __future__ import annotations

import importlib
import types
from typing import Any, Callable, Iterable

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
# Reachable inside allowed namespaces but touch files or take pickles.
DENIED_ATTRS = frozenset(
    {"load", "save", "savez", "savez_compressed", "loadtxt", "savetxt", "genfromtxt", "fromfile", "tofile", "memmap", "fromregex", "DataSource", "config", "debug", "profiler", "distributed"}
)


class NotAllowed(Exception):
    pass


def documented_defaults() -> dict[str, list[str]]:
    """The default allow-list as docs/protocol.md tables it, row by row
    (`python -m jaxbridge_sidecar ops` prints it; the doc test compares).
    Whatever form the allow-list takes, this says what a newcomer must know."""
    return {"namespaces": list(DEFAULT_NAMESPACES), "callables": list(DEFAULT_NAMES), "denied attributes": sorted(DENIED_ATTRS)}


def check_method_name(name: Any, where: str) -> str:
    """Public methods and __call__, minus the names denied everywhere (file I/O, config)."""
    if not isinstance(name, str) or not name.isidentifier() or (name.startswith("_") and name != "__call__"):
        raise NotAllowed(f"{where}: method {name!r}: only public methods and __call__ can be called")
    if name in DENIED_ATTRS:
        raise NotAllowed(f"{where}: method {name!r} is denied everywhere (it touches files, pickles or configuration)")
    return name


class AllowList:
    def __init__(self, namespaces: Iterable[str] = DEFAULT_NAMESPACES, names: Iterable[str] = DEFAULT_NAMES):
        self.namespaces = tuple(dict.fromkeys(namespaces))
        self.names = frozenset(names)
        self._cache: dict[str, Callable[..., Any]] = {}

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

    def resolve(self, dotted: Any) -> Callable[..., Any]:
        if not isinstance(dotted, str) or not dotted:
            raise NotAllowed(f"a function name must be a non-empty dotted string, got {dotted!r}")
        hit = self._cache.get(dotted)
        if hit is not None:
            return hit
        obj = self._lookup(dotted)
        if isinstance(obj, types.ModuleType) or not callable(obj):
            raise NotAllowed(f"{dotted!r} is not a callable")
        self._cache[dotted] = obj
        return obj

    def list_attrs(self, dotted: Any) -> list[dict[str, str]]:
        """Names a client may reach one level below `dotted` ("" for the roots), for completion."""
        if not isinstance(dotted, str):
            raise NotAllowed(f"a path must be a dotted string, got {dotted!r}")
        prefix = dotted + "." if dotted else ""
        entries: dict[str, str] = {}
        # Allowed names and namespaces below this path that are not attributes we can walk to.
        for full in (*self.namespaces, *self.names):
            if full.startswith(prefix) and full != dotted:
                child = full[len(prefix) :].split(".")[0]
                entries.setdefault(child, "module" if full in self.namespaces or "." in full[len(prefix) :] else "function")
        if dotted and (dotted in self.names or self.in_namespace(dotted)):
            obj = self._lookup(dotted)
            for name in dir(obj):
                if name.startswith("_") or name in DENIED_ATTRS:
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
            raise NotAllowed(f"{dotted!r}: private or malformed names cannot be called")
        if any(p in DENIED_ATTRS for p in parts[1:]):
            raise NotAllowed(f"{dotted!r} reads or writes files, or changes the sidecar's configuration, and cannot be called")
        if dotted not in self.names and not self.in_namespace(dotted):
            raise NotAllowed(f"{dotted!r} is not in the sidecar's allow-list ({self.describe()}); add a namespace with `serve --allow`")
        # Import the longest module prefix, then walk attributes.
        obj: Any = None
        rest: list[str] = []
        for cut in range(len(parts), 0, -1):
            modname = ".".join(parts[:cut])
            if not (modname in self.names or self.in_namespace(modname) or any(ns.startswith(modname + ".") for ns in self.namespaces) or any(n.startswith(modname + ".") for n in self.names)):
                continue
            try:
                obj = importlib.import_module(modname)
            except ImportError:
                continue
            rest = parts[cut:]
            break
        if obj is None:
            raise NotAllowed(f"{dotted!r}: no allowed module could be imported for it")
        path = obj.__name__
        for attr in rest:
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                raise NotAllowed(f"{dotted!r}: {path} has no attribute {attr!r}") from None
            path = f"{path}.{attr}"
            if isinstance(obj, types.ModuleType) and not self.in_namespace(obj.__name__):
                raise NotAllowed(f"{dotted!r} reaches module {obj.__name__!r}, which is outside the allow-list")
        return obj
